package scalebench

import "runtime"

func runtimeNumCPU() int { return runtime.NumCPU() }

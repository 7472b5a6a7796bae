package cri

import (
	"sync"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// cpuSamples turns cumulative CPU time into a rate, as containerd does for
// UsageNanoCores: the CPU time used between this sample of an object and
// the one before it, over the time between them. The first sample of an
// object has no rate (nil: kubelet then computes one itself, from its own
// samples); one not newer than the last gives the last rate.
// Containers and sandboxes are sampled under their own IDs.
type cpuSamples struct {
	mu   sync.Mutex
	last map[string]cpuSample
}

type cpuSample struct {
	at    time.Time
	usage uint64 // core-nanoseconds
	rate  uint64 // nanocores since the sample before
	known bool   // rate was computed (not the first sample)
}

// sampleTTL: samples of objects nobody asked about for this long are
// dropped (the object is most likely gone).
const sampleTTL = 10 * time.Minute

func newCPUSamples() *cpuSamples {
	return &cpuSamples{last: map[string]cpuSample{}}
}

// nanoCores records usage (core-nanoseconds) of id at ts and returns the
// rate since the previous sample, in nanocores; nil on the first sample.
func (c *cpuSamples) nanoCores(id string, ts time.Time, usage uint64) *runtimeapi.UInt64Value {
	c.mu.Lock()
	defer c.mu.Unlock()
	prev, ok := c.last[id]
	if ok && !ts.After(prev.at) {
		return prev.value()
	}
	cur := cpuSample{at: ts, usage: usage}
	if ok && usage >= prev.usage { // else the VM restarted: start again
		cur.rate = uint64(float64(usage-prev.usage) * float64(time.Second) / float64(ts.Sub(prev.at)))
		cur.known = true
	}
	c.last[id] = cur
	for k, s := range c.last {
		if ts.Sub(s.at) > sampleTTL {
			delete(c.last, k)
		}
	}
	return cur.value()
}

func (s cpuSample) value() *runtimeapi.UInt64Value {
	if !s.known {
		return nil
	}
	return &runtimeapi.UInt64Value{Value: s.rate}
}

package annotations

import (
	"errors"
	"strings"
	"testing"
)

// FuzzParse feeds arbitrary values to the annotations that parse structure
// and to the resources. Parse must never panic, must return either a config
// or errors, and every error must be an *Error naming a known input.
func FuzzParse(f *testing.F) {
	f.Add("2", "virtio", "host-model", "mode: host-passthrough", "10Gi", "configdrive", "a: 1", "runcmd: [ls]", "configmap/ud", "secret/keys/k", "6ed9e1c2-8f3b-4a57-9c0d-2b1e3f4a5b6c", "true", int64(512<<20), int64(1024), int64(100000), int64(50000))
	f.Add("0", "ide", "core2duo", "modle: x", "-1", "iso", "[1", "- a", "pod/x", "secret/", "nope", "yes", int64(1), int64(1), int64(1), int64(1))
	f.Fuzz(func(t *testing.T, vcpu, driver, cpuModel, cpuSetting, rootSize, ciType, metaData, userData, udSource, sshSource, sysUUID, boolean string, mem, shares, period, quota int64) {
		ann := map[string]string{
			KeyVCPUCount: vcpu, KeyDiskDriver: driver, KeyCPUModel: cpuModel,
			KeyLibvirtCPUSetting: cpuSetting, KeyRootVolumeSize: rootSize,
			KeyCloudInitImageType: ciType, KeyCloudInitMetaData: metaData,
			KeyCloudInitUserData: userData, KeyCloudInitUserDataSource: udSource,
			KeySSHKeySource: sshSource, KeySystemUUID: sysUUID,
			KeyChown9pfsMounts: boolean, KeyCloudInitUserDataSourceKey: boolean,
		}
		res := Resources{MemoryLimitBytes: mem, CPUShares: shares, CPUPeriod: period, CPUQuota: quota}
		cfg, err := Parse(ann, res, []EnvVar{{Name: boolean, Value: vcpu}})
		if err != nil {
			if cfg != nil {
				t.Fatalf("Parse returned a config and an error: %v", err)
			}
			checkErrors(t, err)
			return
		}
		checkConfig(t, cfg)
	})
}

// checkErrors asserts err joins only *Error values, each naming its input.
func checkErrors(t *testing.T, err error) {
	t.Helper()
	var list []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		list = j.Unwrap()
	} else {
		list = []error{err}
	}
	if len(list) == 0 {
		t.Fatalf("empty error %v", err)
	}
	for _, e := range list {
		var ae *Error
		if !errors.As(e, &ae) {
			t.Fatalf("error %v (%T) is not an *annotations.Error", e, e)
		}
		if !known[ae.Annotation] && !containerFields[ae.Annotation] {
			t.Fatalf("error names unknown input %q: %v", ae.Annotation, ae)
		}
		if !strings.Contains(ae.Error(), ae.Annotation) || ae.Accepted == "" {
			t.Fatalf("error does not say what and what is accepted: %v", ae)
		}
	}
}

// checkConfig asserts the invariants runtime/domain relies on.
func checkConfig(t *testing.T, c *VMConfig) {
	t.Helper()
	if c.VCPUCount < 1 || c.VCPUCount > MaxVCPUCount {
		t.Fatalf("VCPUCount %d", c.VCPUCount)
	}
	if c.MemoryBytes < MinMemoryBytes || c.MemoryBytes%(1<<20) != 0 {
		t.Fatalf("MemoryBytes %d", c.MemoryBytes)
	}
	if c.DiskDriver != DiskDriverSCSI && c.DiskDriver != DiskDriverVirtio {
		t.Fatalf("DiskDriver %q", c.DiskDriver)
	}
	if c.CPUModel != CPUModelDefault && c.CPUModel != CPUModelHostModel {
		t.Fatalf("CPUModel %q", c.CPUModel)
	}
	if c.CloudInit.ImageType != CloudInitNoCloud && c.CloudInit.ImageType != CloudInitConfigDrive {
		t.Fatalf("ImageType %q", c.CloudInit.ImageType)
	}
	if c.RootVolumeSize < 0 || c.CPUShares < 0 || c.CPUPeriod < 0 || c.CPUQuota < 0 {
		t.Fatalf("negative size or resource: %+v", c)
	}
	if c.CPUSetting != nil {
		if err := checkCPU(c.CPUSetting, c.VCPUCount); err != nil {
			t.Fatalf("accepted CPU setting fails its own check: %v", err)
		}
	}
}

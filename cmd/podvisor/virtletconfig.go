package main

import (
	"fmt"
	"strings"

	"github.com/podvisor/podvisor/internal/daemon"
	"github.com/podvisor/podvisor/internal/virtletconfig"
)

// virtletConfigNotes are what applying the virtlet-config ConfigMap did,
// logged once the logger exists: Info for a key that set a flag's value,
// Warn for one without effect.
type virtletConfigNotes struct {
	Info, Warn []string
}

// applyVirtletConfig reads Virtlet's virtlet-config ConfigMap mounted at
// dir ("" = none) and gives its keys with a podvisor equivalent to cfg and
// the log level, below podvisor's own settings: a flag given on the
// command line or a value in the config file file wins, with a warning.
func applyVirtletConfig(dir string, cfg *daemon.Config, file daemon.Config, set map[string]bool, logLevel *string) (virtletConfigNotes, error) {
	var n virtletConfigNotes
	if dir == "" {
		return n, nil
	}
	cm, err := virtletconfig.Read(dir)
	if err != nil {
		return n, err
	}
	r := virtletconfig.Translate(cm)
	n.Warn = r.Warnings
	s := r.Settings
	take := func(flag string, inFile bool, value string, assign func()) {
		key, ok := r.From[flag]
		if !ok {
			return
		}
		if set[flag] || inFile {
			n.Warn = append(n.Warn, fmt.Sprintf("virtlet-config key %s (--%s %s) is overridden by podvisor's own --%s", key, flag, value, flag))
			return
		}
		assign()
		n.Info = append(n.Info, fmt.Sprintf("virtlet-config key %s sets --%s %s", key, flag, value))
	}
	take("kvm", file.KVM != "", s.KVM, func() { cfg.KVM = s.KVM })
	take("image-translations-dir", file.ImageTranslationsDir != "", s.ImageTranslationsDir, func() { cfg.ImageTranslationsDir = s.ImageTranslationsDir })
	take("libvirt-uri", file.LibvirtURI != "", s.LibvirtURI, func() { cfg.LibvirtURI = s.LibvirtURI })
	take("cni-conf-dir", file.CNIConfDir != "", s.CNIConfDir, func() { cfg.CNIConfDir = s.CNIConfDir })
	take("cni-bin-dir", len(file.CNIBinDirs) > 0, strings.Join(s.CNIBinDirs, ","), func() { cfg.CNIBinDirs = s.CNIBinDirs })
	take("log-level", false, s.LogLevel, func() { *logLevel = s.LogLevel })
	return n, nil
}

package daemon

import (
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"

	"github.com/podvisor/podvisor/runtime/image"
)

// DefaultImageMaxSize is --image-max-size's default (image.DefaultMaxImageSize).
const DefaultImageMaxSize = "64Gi"

// validateDownloads parses the image download policy's settings.
func (c *Config) validateDownloads() error {
	c.imageAllowNets = nil
	for _, n := range c.ImageDownloadAllowNetworks {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		p, err := netip.ParsePrefix(n)
		if err != nil {
			a, aerr := netip.ParseAddr(n)
			if aerr != nil {
				return fmt.Errorf("image-download-allow-networks: %q is not accepted: use CIDRs like 127.0.0.1/32 or 10.99.0.0/24, or single addresses", n)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		c.imageAllowNets = append(c.imageAllowNets, p.Masked())
	}
	if c.ImageMaxSize == "" {
		c.ImageMaxSize = DefaultImageMaxSize
	}
	n, err := parseSize(c.ImageMaxSize)
	if err != nil {
		return fmt.Errorf("image-max-size: %q is not accepted: use bytes or a size like 64Gi, 500Mi or 20G (Kubernetes quantity suffixes), or 0 for no limit", c.ImageMaxSize)
	}
	c.imageMaxBytes = n
	return nil
}

// sizeSuffixes are Kubernetes' quantity suffixes for bytes.
var sizeSuffixes = []struct {
	s string
	m int64
}{
	{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"Ti", 1 << 40},
	{"k", 1e3}, {"K", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12},
}

// parseSize reads a whole number of bytes with an optional suffix.
func parseSize(v string) (int64, error) {
	v = strings.TrimSpace(v)
	mult := int64(1)
	for _, sf := range sizeSuffixes {
		if num, ok := strings.CutSuffix(v, sf.s); ok {
			v, mult = num, sf.m
			break
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("not a size")
	}
	if n > math.MaxInt64/mult {
		return 0, fmt.Errorf("too large")
	}
	return n * mult, nil
}

// downloadOptions is the image store's download policy.
func (c *Config) downloadOptions() []image.Option {
	return []image.Option{
		image.WithAllowUntranslated(c.ImageAllowUntranslated),
		image.WithAllowNetworks(c.imageAllowNets),
		image.WithAllowPrivate(c.ImageDownloadAllowPrivate),
		image.WithInsecureRedirects(c.ImageDownloadAllowInsecureRedirects),
		image.WithMaxImageSize(c.imageMaxBytes),
		image.WithRegistries(image.Registries{
			Insecure: trimmed(c.ImageInsecureRegistries),
			CAFiles:  trimmed(c.ImageRegistryCAFiles),
			Mirrors:  c.ImageRegistryMirrors,
		}),
	}
}

// trimmed drops blanks and spaces of a comma-separated flag's values.
func trimmed(vs []string) []string {
	var out []string
	for _, v := range vs {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

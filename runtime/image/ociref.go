package image

import (
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
)

// How a name reaches the store (docs/images.md, "Image names"):
//
//   - "sha256:<hex>" (or bare hex) is an image ID;
//   - a name with the virtlet.cloud/ prefix, or a URL (it has "://"), is a
//     Virtlet name: translated to a URL and downloaded (translate.go);
//   - anything else is an OCI reference, registry/repo[:tag][@sha256:...],
//     pulled from its registry as a KubeVirt containerDisk (oci.go).

// ociLinkPrefix starts the link name of an OCI reference under links/. A
// link starting with '%' is the name of an absolute path, which parseName
// refuses, so no Virtlet name can find or overwrite it (as scopedLink).
const ociLinkPrefix = "%oci%"

// ociName is a parsed OCI reference.
type ociName struct {
	ref name.Reference
	// repo is the repository as containerd reports it:
	// "docker.io/library/busybox", "127.0.0.1:5000/disks/cirros".
	repo string
	// tag is set for a reference by tag ("latest" when none was given),
	// digest ("sha256:<hex>") for one by digest.
	tag, digest string
}

// isOCIName says whether name goes to a registry rather than through
// translation.
func isOCIName(s string) bool {
	if _, ok := parseRef(s); ok {
		return false
	}
	return !strings.HasPrefix(s, CRIPrefix) && !strings.Contains(s, "://")
}

// parseOCIName parses an OCI reference as kubelet or crictl give it,
// normalising it as containerd does: "busybox" is
// docker.io/library/busybox:latest.
func parseOCIName(s string, opts ...name.Option) (ociName, error) {
	if strings.ContainsRune(s, 0) {
		return ociName{}, fmt.Errorf("image name %q: contains a NUL byte", s)
	}
	ref, err := name.ParseReference(s, opts...)
	if err != nil {
		return ociName{}, fmt.Errorf("image name %q: not an OCI image reference (registry/repository[:tag][@sha256:<64 hex>]), nor a Virtlet name (%s<name>): %w", s, CRIPrefix, err)
	}
	reg := registryKey(ref.Context().RegistryStr()) // docker.io, as docker's reference normalisation names it
	n := ociName{ref: ref, repo: reg + "/" + ref.Context().RepositoryStr()}
	switch r := ref.(type) {
	case name.Digest:
		n.digest = r.DigestStr()
		if !strings.HasPrefix(n.digest, "sha256:") || !hexDigest.MatchString(strings.TrimPrefix(n.digest, "sha256:")) {
			return ociName{}, fmt.Errorf("image name %q: digest must be sha256: followed by 64 lowercase hex digits", s)
		}
	case name.Tag:
		n.tag = r.TagStr()
	}
	return n, nil
}

// String is the name as the CRI reports it: repo:tag or repo@digest.
func (n ociName) String() string {
	if n.digest != "" {
		return n.repo + "@" + n.digest
	}
	return n.repo + ":" + n.tag
}

// digestName is repo@digest, the RepoDigest of the image a tag named.
func (n ociName) digestName(digest string) string { return n.repo + "@" + digest }

// ociLink is the link name of a reported OCI name.
func ociLink(reported string) (string, error) {
	l := ociLinkPrefix + strings.ReplaceAll(reported, "/", "%")
	if len(l) > 255 {
		return "", fmt.Errorf("image name %q: is %d bytes long as stored, at most 255 accepted", reported, len(l))
	}
	return l, nil
}

// ociNameOfLink returns the reported name of an OCI link, ok false for a
// link of another kind.
func ociNameOfLink(link string) (string, bool) {
	rest, ok := strings.CutPrefix(link, ociLinkPrefix)
	if !ok {
		return "", false
	}
	return strings.ReplaceAll(rest, "%", "/"), true
}

// ociLinkOf is the link of an OCI reference given by a user. The
// registry's insecure option changes only its scheme, not the name, so it
// is not parsed with it.
func (s *Store) ociLinkOf(ref string) (string, error) {
	n, err := parseOCIName(ref)
	if err != nil {
		return "", err
	}
	return ociLink(n.String())
}

// lookupOCI finds an OCI name's image: done is true when nameOrRef is an
// OCI name pulled as one. Otherwise the caller tries it as a Virtlet name:
// a name without the virtlet.cloud/ prefix pulled by an older podvisor
// (or through Store.Pull) keeps resolving.
func (s *Store) lookupOCI(nameOrRef string) (hex string, ok, done bool) {
	if !isOCIName(nameOrRef) {
		return "", false, false
	}
	link, err := s.ociLinkOf(nameOrRef)
	if err != nil {
		return "", false, false
	}
	if h, ok := s.readLink(link); ok {
		return h, true, true
	}
	return "", false, false
}

// linkOf is the link under links/ of a name (not an ID): the OCI link when
// the name is an OCI name pulled as one, else the Virtlet name's.
func (s *Store) linkOf(nameOrRef string) (string, error) {
	if _, ok, _ := s.lookupOCI(nameOrRef); ok {
		return s.ociLinkOf(nameOrRef)
	}
	n, err := parseName(nameOrRef)
	if err != nil {
		return "", err
	}
	return n.link, nil
}

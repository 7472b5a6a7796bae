package image

import (
	"context"
	"fmt"
	"strings"
)

// The CRI's view of the store: how kubelet and crictl see image names, and
// what RemoveImage removes. OCI references are reported as containerd
// reports them (the tag as pulled, repo@<manifest digest>); Virtlet names
// with the virtlet.cloud/ prefix and ":latest", as the store keeps them
// without kubelet's default tag.

// CRIName is how kubelet names a stored image: with the virtlet.cloud/
// prefix, so that its name matching works as with containerd.
func CRIName(name string) string {
	if !strings.HasPrefix(name, CRIPrefix) {
		name = CRIPrefix + name
	}
	return name
}

// CRITags returns img's repo tags and digests as the CRI reports them:
// OCI references as pulled; Virtlet names prefixed, tags with ":latest"
// (the store keeps them without kubelet's default tag).
func CRITags(img Image) (repoTags, repoDigests []string) {
	repoTags = append(repoTags, img.OCITags...)
	repoDigests = append(repoDigests, img.OCIDigests...)
	for _, t := range img.RepoTags {
		repoTags = append(repoTags, CRIName(t)+":latest")
	}
	for _, d := range img.RepoDigests {
		repoDigests = append(repoDigests, CRIName(d))
	}
	return repoTags, repoDigests
}

// RemoveImage is the CRI's RemoveImage. As containerd: the image goes with
// every name, whichever name or the ID the call gives (critest: "removing
// image by one tag should remove all tags"). By name, content a VM uses
// stays, listed by its ID until kubelet's image GC removes that; by ID it is
// refused then (ErrInUse). A missing image is not an error.
func (s *Store) RemoveImage(ctx context.Context, nameOrRef string) error {
	img, err := s.Status(ctx, nameOrRef)
	if err != nil || img == nil {
		return err
	}
	if strings.HasSuffix(nameOrRef, img.Ref) {
		return s.Remove(ctx, nameOrRef)
	}
	names := append(append(append([]string(nil), img.OCITags...), img.OCIDigests...), img.RepoTags...)
	for _, n := range names {
		if err := s.Remove(ctx, n); err != nil {
			return fmt.Errorf("removing %s, a name of image %s: %w", n, img.Ref, err)
		}
	}
	return nil
}

package cri

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The image config's User is reported as containerd's CRI reports it
// (critest's "image status get image fields should not have Uid|Username
// empty"; kubelet's runAsNonRoot check reads them).
func TestImageUser(t *testing.T) {
	for _, tc := range []struct {
		user     string
		uid      *int64
		username string
	}{
		{user: ""},
		{user: "1002", uid: ptr(1002)},
		{user: "0", uid: ptr(0)},
		{user: "1003:1004", uid: ptr(1003)},
		{user: "www-data", username: "www-data"},
		{user: "www-data:1004", username: "www-data"},
		{user: "www-data:www-data", username: "www-data"},
		{user: "root:0", username: "root"},
		{user: ":1004"},                                                  // a group alone: neither
		{user: "1002a", username: "1002a"},                               // not a number: a name
		{user: "99999999999999999999", username: "99999999999999999999"}, // beyond int64
		{user: "-1", uid: ptr(-1)},                                       // strconv's integer, as containerd
	} {
		uid, username := imageUser(tc.user)
		var got *int64
		if uid != nil {
			got = &uid.Value
		}
		if !cmp.Equal(got, tc.uid) || username != tc.username {
			t.Errorf("imageUser(%q) = uid %v, username %q; want uid %v, username %q", tc.user, deref(got), username, deref(tc.uid), tc.username)
		}
	}
}

func ptr(v int64) *int64 { return &v }

func deref(p *int64) any {
	if p == nil {
		return nil
	}
	return *p
}

type oneImage struct {
	Images
	img Image
}

func (o oneImage) Status(context.Context, string) (*Image, error) { return &o.img, nil }
func (o oneImage) List(context.Context) ([]Image, error)          { return []Image{o.img}, nil }

// ImageStatus and ListImages carry the user; an image without one (a URL
// image) reports neither field.
func TestImageStatusReportsTheUser(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		user string
		want *runtimeapi.Image
	}{
		{"1002", &runtimeapi.Image{Uid: &runtimeapi.Int64Value{Value: 1002}}},
		{"www-data:1004", &runtimeapi.Image{Username: "www-data"}},
		{"", &runtimeapi.Image{}},
	} {
		img := Image{Ref: "sha256:ab", RepoTags: []string{"r/x:1"}, Size: 3, User: tc.user}
		tc.want.Id, tc.want.RepoTags, tc.want.Size, tc.want.Spec = img.Ref, img.RepoTags, img.Size, &runtimeapi.ImageSpec{Image: img.Ref}
		s := &Server{cfg: Config{Images: oneImage{img: img}}}
		st, err := s.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: "r/x:1"}})
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(tc.want, st.GetImage(), protocmp.Transform()); d != "" {
			t.Errorf("ImageStatus of user %q (-want +got):\n%s", tc.user, d)
		}
		l, err := s.ListImages(ctx, &runtimeapi.ListImagesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff([]*runtimeapi.Image{tc.want}, l.GetImages(), protocmp.Transform()); d != "" {
			t.Errorf("ListImages of user %q (-want +got):\n%s", tc.user, d)
		}
	}
}

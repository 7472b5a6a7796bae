package main

import (
	"reflect"
	"testing"
	"time"

	"github.com/podvisor/podvisor/internal/daemon"
)

// TestMergeKeepsEveryFileField: a value given only in the config file
// survives merge for every field of daemon.Config (a field added to Config
// but not to merge would be silently dropped).
func TestMergeKeepsEveryFileField(t *testing.T) {
	var file daemon.Config
	v := reflect.ValueOf(&file).Elem()
	for i := 0; i < v.NumField(); i++ {
		f, sf := v.Field(i), v.Type().Field(i)
		if !sf.IsExported() {
			continue
		}
		switch {
		case f.Kind() == reflect.String:
			f.SetString("file-" + sf.Name)
		case f.Kind() == reflect.Bool:
			f.SetBool(true)
		case f.Type() == reflect.TypeFor[time.Duration]():
			f.SetInt(int64(time.Minute))
		case f.Kind() == reflect.Int64:
			f.SetInt(12345)
		case f.Kind() == reflect.Uint:
			f.SetUint(77)
		case f.Kind() == reflect.Uint32: // os.FileMode
			f.SetUint(0o640)
		case f.Kind() == reflect.Slice && f.Type().Elem().Kind() == reflect.String:
			f.Set(reflect.ValueOf([]string{"file-" + sf.Name}))
		case f.Type() == reflect.TypeFor[map[string][]string]():
			f.Set(reflect.ValueOf(map[string][]string{"file-" + sf.Name: {"mirror"}}))
		default:
			t.Fatalf("Config.%s has type %s: teach this test how to fill it", sf.Name, f.Type())
		}
	}
	flags := daemon.Config{CNIBinDirs: []string{"/opt/cni/bin"}, Listen: "unix:///flag.sock"}
	got := merge(file, flags, map[string]bool{})
	if !reflect.DeepEqual(got, file) {
		t.Errorf("merge(file, defaults, nothing set) =\n%+v\nwant the file's values\n%+v", got, file)
	}
}

func TestMergeImageMappingNamespace(t *testing.T) {
	tests := []struct {
		name       string
		file, flag string
		set        bool
		want       string
	}{
		{name: "neither: all namespaces", want: ""},
		{name: "file", file: "kube-system", want: "kube-system"},
		{name: "flag", flag: "images", set: true, want: "images"},
		{name: "flag wins", file: "kube-system", flag: "images", set: true, want: "images"},
		{name: "flag set to empty wins", file: "kube-system", flag: "", set: true, want: ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			set := map[string]bool{"image-mapping-namespace": tc.set}
			got := merge(daemon.Config{ImageMappingNamespace: tc.file}, daemon.Config{ImageMappingNamespace: tc.flag}, set)
			if got.ImageMappingNamespace != tc.want {
				t.Errorf("ImageMappingNamespace = %q, want %q", got.ImageMappingNamespace, tc.want)
			}
		})
	}
}

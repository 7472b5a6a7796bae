package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/podvisor/podvisor/runtime/proxy"
)

// TestAnnotationRoutingFlag: --annotation-routing=false reaches the proxy
// (a pod asking by the annotation is refused, naming the flag), and a
// config file's annotationRouting is overridden by the flag.
func TestAnnotationRoutingFlag(t *testing.T) {
	dir := shortDir(t)
	cfg := filepath.Join(dir, "proxy.yaml")
	write := func(s string) {
		t.Helper()
		if err := writeFile(cfg, s); err != nil {
			t.Fatal(err)
		}
	}
	write("annotationRouting: true\n")
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"flag", []string{"--annotation-routing=false"}},
		{"flag over the config file", []string{"--config", cfg, "--annotation-routing=false"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sock := filepath.Join(dir, "p.sock")
			errc, stop := start(t, sock, append(tc.args, "--runtime", "podvisor=unix://"+filepath.Join(dir, "podvisor.sock"))...)
			defer stop()
			waitServing(t, sock, errc)
			conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err = runtimeapi.NewRuntimeServiceClient(conn).RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: &runtimeapi.PodSandboxConfig{
				Metadata: &runtimeapi.PodSandboxMetadata{Name: "vm", Namespace: "default", Uid: "u"}, Annotations: map[string]string{proxy.TargetRuntimeAnnotation: proxy.VirtletTargetRuntime}}})
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "--annotation-routing=false") {
				t.Errorf("RunPodSandbox by annotation: %v; want InvalidArgument naming the flag", err)
			}
			stop()
			select {
			case err := <-errc:
				if err != nil {
					t.Errorf("criproxy: %v", err)
				}
			case <-time.After(15 * time.Second):
				t.Fatal("criproxy did not stop")
			}
		})
	}
}

func writeFile(path, s string) error { return os.WriteFile(path, []byte(s), 0o644) }

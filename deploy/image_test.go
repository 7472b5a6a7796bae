package deploy

import (
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// The node image has two builds: make image (image/build.sh: mmdebstrap,
// umoci, no Docker) and image/Dockerfile. Both take the Debian packages of
// image/packages.txt and the files of image/files.txt; these tests keep the
// Dockerfile's copy of that recipe in step, since it cannot be built here.

// imageFile is one line of image/files.txt.
type imageFile struct {
	src, dest, mode, kind string
}

func listLines(t *testing.T, path string) [][]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]string
	for _, l := range strings.Split(string(b), "\n") {
		if i := strings.IndexByte(l, '#'); i >= 0 {
			l = l[:i]
		}
		if f := strings.Fields(l); len(f) > 0 {
			out = append(out, f)
		}
	}
	return out
}

func imageFiles(t *testing.T) []imageFile {
	t.Helper()
	var out []imageFile
	for _, f := range listLines(t, "image/files.txt") {
		if len(f) < 3 || len(f) > 4 {
			t.Fatalf("image/files.txt: %q: want SOURCE DESTINATION MODE [cgo|static]", strings.Join(f, " "))
		}
		e := imageFile{src: f[0], dest: f[1], mode: f[2]}
		if len(f) == 4 {
			e.kind = f[3]
		}
		isCmd := strings.HasPrefix(e.src, "cmd/")
		if isCmd != (e.kind == "cgo" || e.kind == "static") {
			t.Fatalf("image/files.txt: %s: Go packages (cmd/...) need cgo or static, files nothing; got %q", e.src, e.kind)
		}
		out = append(out, e)
	}
	return out
}

// dockerStages splits the Dockerfile into stages of joined instructions
// (continuation lines folded, comments dropped).
func dockerStages(t *testing.T) [][]string {
	t.Helper()
	b, err := os.ReadFile("image/Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var stages [][]string
	var cur strings.Builder
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "#") {
			continue
		}
		if s, ok := strings.CutSuffix(l, "\\"); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(l)
		ins := strings.Join(strings.Fields(cur.String()), " ")
		cur.Reset()
		if ins == "" {
			continue
		}
		if strings.HasPrefix(ins, "FROM ") {
			stages = append(stages, nil)
		}
		if len(stages) == 0 {
			t.Fatalf("image/Dockerfile: %q before the first FROM", ins)
		}
		stages[len(stages)-1] = append(stages[len(stages)-1], ins)
	}
	if len(stages) != 2 {
		t.Fatalf("image/Dockerfile has %d stages, want 2 (build, image)", len(stages))
	}
	return stages
}

// TestDockerfileCopiesFilesList: the image stage copies exactly the files of
// files.txt to their destinations (binaries from the build stage's /out),
// sets their modes, and installs exactly packages.txt.
func TestDockerfileCopiesFilesList(t *testing.T) {
	final := dockerStages(t)[1]
	var want, got []string
	modes := map[string]string{}
	for _, f := range imageFiles(t) {
		src := f.src
		if f.kind != "" {
			src = "--from=build /out/" + lastElem(f.src)
			if lastElem(f.src) != lastElem(f.dest) {
				t.Errorf("files.txt: %s installs as %s: the Dockerfile's /out names binaries after their package", f.src, f.dest)
			}
		}
		want = append(want, "COPY "+src+" "+f.dest)
		modes[f.dest] = f.mode
	}
	want = append(want, "COPY deploy/image/packages.txt /tmp/podvisor-packages.txt")
	chmod := map[string]string{}
	installs := 0
	for _, ins := range final {
		switch {
		case strings.HasPrefix(ins, "COPY "):
			got = append(got, ins)
		case strings.HasPrefix(ins, "RUN chmod "):
			f := strings.Fields(ins)
			for _, p := range f[3:] {
				chmod[p] = f[2]
			}
		case strings.Contains(ins, "apt-get install"):
			installs++
			if !regexp.MustCompile(`sed -e 's/#\.\*//' /tmp/podvisor-packages.txt \| xargs apt-get install -y --no-install-recommends &&`).MatchString(ins) {
				t.Errorf("image/Dockerfile: %q: the image installs packages.txt and nothing else, without Recommends (mmdebstrap's default)", ins)
			}
		}
	}
	sort.Strings(want)
	sort.Strings(got)
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("image/Dockerfile's COPY lines differ from image/files.txt (-files.txt +Dockerfile):\n%s", d)
	}
	if d := cmp.Diff(modes, chmod); d != "" {
		t.Errorf("image/Dockerfile's chmod differs from the modes of image/files.txt (-files.txt +Dockerfile):\n%s", d)
	}
	if installs != 1 {
		t.Errorf("image/Dockerfile's image stage runs apt-get install %d times, want once (packages.txt)", installs)
	}
}

// TestDockerfileBuildsLikeBuildScript: the build stage builds every Go
// binary of files.txt with the cgo setting files.txt gives it (criproxy
// static), -trimpath and the version override build.sh passes.
func TestDockerfileBuildsLikeBuildScript(t *testing.T) {
	build := strings.Join(dockerStages(t)[0], "\n")
	for _, f := range imageFiles(t) {
		if f.kind == "" {
			continue
		}
		cgo := map[string]string{"cgo": "1", "static": "0"}[f.kind]
		re := regexp.MustCompile(fmt.Sprintf(`CGO_ENABLED=%s go build -trimpath -ldflags "\$ld" -o /out/%s \./%s( |$)`,
			cgo, regexp.QuoteMeta(lastElem(f.src)), regexp.QuoteMeta(f.src)))
		if !re.MatchString(build) {
			t.Errorf("image/Dockerfile does not build ./%s with CGO_ENABLED=%s -trimpath -ldflags \"$ld\" into /out (files.txt says %s)", f.src, cgo, f.kind)
		}
	}
	const ld = `ld="-X github.com/podvisor/podvisor/internal/version.override=$v"`
	if !strings.Contains(build, ld) {
		t.Errorf("image/Dockerfile's build stage lacks %s", ld)
	}
	script, err := os.ReadFile("image/build.sh")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(script), `-X github.com/podvisor/podvisor/internal/version.override=$version`) {
		t.Error("image/build.sh no longer stamps the version as the Dockerfile does")
	}
}

// TestDockerfileConfigMatchesBuildScript: PATH, CMD and labels agree.
func TestDockerfileConfigMatchesBuildScript(t *testing.T) {
	final := dockerStages(t)[1]
	script, err := os.ReadFile("image/build.sh")
	if err != nil {
		t.Fatal(err)
	}
	assign := func(name string) string {
		m := regexp.MustCompile(`(?m)^` + name + `=(\S+)$`).FindSubmatch(script)
		if m == nil {
			t.Fatalf("image/build.sh: no %s=...", name)
		}
		return string(m[1])
	}
	want := []string{
		"ENV PATH=" + assign("image_path"),
		`CMD ["/bin/bash"]`,
		"LABEL " + assign("image_label"),
	}
	if !strings.Contains(string(script), "--config.cmd /bin/bash") {
		t.Error("image/build.sh: the image's command is no longer /bin/bash")
	}
	var got []string
	for _, ins := range final {
		if strings.HasPrefix(ins, "ENV ") || strings.HasPrefix(ins, "CMD ") || strings.HasPrefix(ins, "LABEL ") || strings.HasPrefix(ins, "ENTRYPOINT ") {
			got = append(got, ins)
		}
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("image/Dockerfile's config differs from image/build.sh's (-build.sh +Dockerfile):\n%s", d)
	}
}

// TestPackagesList: one package name per line, no duplicates, and the
// ones the node scripts and podvisor run are there.
func TestPackagesList(t *testing.T) {
	seen := map[string]bool{}
	for _, f := range listLines(t, "image/packages.txt") {
		if len(f) != 1 || !regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+$`).MatchString(f[0]) {
			t.Errorf("image/packages.txt: %q: want one Debian package name per line", strings.Join(f, " "))
			continue
		}
		if seen[f[0]] {
			t.Errorf("image/packages.txt: %s twice", f[0])
		}
		seen[f[0]] = true
	}
	for _, p := range []string{"libvirt-daemon-system", "libvirt-clients", "qemu-system-x86", "qemu-utils", "util-linux", "genisoimage"} {
		if !seen[p] {
			t.Errorf("image/packages.txt lacks %s", p)
		}
	}
}

func lastElem(p string) string { return p[strings.LastIndexByte(p, '/')+1:] }

// TestStaticBinariesAreStatic builds each "static" Go binary of files.txt
// as the image builds do (CGO_ENABLED=0) and checks the ELF file asks for
// no program interpreter: criproxy is copied onto the node and must run
// on any libc (glibc 2.17 hosts, musl), so a cgo dependency creeping into
// it fails here rather than on a customer's node.
func TestStaticBinariesAreStatic(t *testing.T) {
	if testing.Short() {
		t.Skip("builds binaries")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go not on PATH")
	}
	n := 0
	for _, f := range imageFiles(t) {
		if f.kind != "static" {
			continue
		}
		n++
		out := filepath.Join(t.TempDir(), lastElem(f.src))
		cmd := exec.Command(goBin, "build", "-trimpath", "-o", out, "./"+f.src)
		cmd.Dir = ".."
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("CGO_ENABLED=0 go build ./%s: %v\n%s", f.src, err, b)
			continue
		}
		if interp := elfInterpreter(t, out); interp != "" {
			t.Errorf("%s built with CGO_ENABLED=0 still needs %s: it would not run on nodes with another libc", f.src, interp)
		}
	}
	if n == 0 {
		t.Fatal("files.txt lists no static binary: criproxy must be one")
	}
	// The check itself: a cgo binary of this module has an interpreter.
	if _, err := exec.LookPath("gcc"); err == nil {
		out := filepath.Join(t.TempDir(), "podvisor-vmwrapper")
		cmd := exec.Command(goBin, "build", "-o", out, "./cmd/podvisor-vmwrapper")
		cmd.Dir = ".."
		cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("cgo build for the control check: %v\n%s", err, b)
		}
		if elfInterpreter(t, out) == "" {
			t.Error("a CGO_ENABLED=1 build shows no interpreter: elfInterpreter cannot tell static from dynamic")
		}
	}
}

// elfInterpreter returns the PT_INTERP path of an ELF file, "" for none.
func elfInterpreter(t *testing.T, path string) string {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			b := make([]byte, p.Filesz)
			if _, err := p.ReadAt(b, 0); err != nil {
				t.Fatal(err)
			}
			return strings.TrimRight(string(b), "\x00")
		}
	}
	return ""
}

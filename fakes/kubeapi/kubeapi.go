// Package kubeapi is a small fake Kubernetes API server for tests, on
// 127.0.0.1 over plain HTTP. It answers what podvisor's clients ask:
//
//   - GET of one object (runtime/kube's ConfigMap and Secret reads);
//   - LIST of a resource, in all namespaces or in one;
//   - WATCH of a resource: it stays open and sends nothing until the client
//     or the server goes. A streaming list (client-go's watch-list,
//     sendInitialEvents=true) is refused with 422, so clients list instead.
//
// A resource that was never Added answers 404, as one whose CRD is not
// installed does. Objects are fixed once served; Add more before clients
// list, or Add a resource late to model a CRD installed after start-up.
package kubeapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"

	"k8s.io/client-go/rest"
)

// Resource names a served resource and its objects' kind; Group "" is the
// core group.
type Resource struct {
	Group, Version, Resource, Kind string
}

func (r Resource) apiVersion() string {
	if r.Group == "" {
		return r.Version
	}
	return r.Group + "/" + r.Version
}

func (r Resource) prefix() string {
	if r.Group == "" {
		return "/api/" + r.Version
	}
	return "/apis/" + r.Group + "/" + r.Version
}

// Server is the fake API server.
type Server struct {
	// URL is the server's base URL, http://127.0.0.1:port.
	URL string

	srv  *httptest.Server
	done chan struct{}
	once sync.Once

	mu        sync.Mutex
	resources map[Resource]*resource
	forbidden map[string]bool
	requests  []string
}

type resource struct {
	objs []map[string]any // in the order added
}

// New starts a server; Close stops it.
func New() *Server {
	s := &Server{done: make(chan struct{}), resources: map[Resource]*resource{}, forbidden: map[string]bool{}}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	s.URL = s.srv.URL
	return s
}

// Close ends open watches and stops the server.
func (s *Server) Close() {
	s.once.Do(func() { close(s.done) })
	s.srv.Close()
}

// Add serves res (from now on, even with no objects) and adds objs to it.
// An object is anything that marshals to JSON with metadata.name (and
// metadata.namespace for a namespaced resource); apiVersion and kind are
// filled in from res.
func (s *Server) Add(res Resource, objs ...any) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.resources[res]
	if r == nil {
		r = &resource{}
		s.resources[res] = r
	}
	for _, o := range objs {
		data, err := json.Marshal(o)
		if err != nil {
			return err
		}
		var m map[string]any
		if err := json.Unmarshal(data, &m); err != nil {
			return err
		}
		if metadata(m, "name") == "" {
			return fmt.Errorf("kubeapi: %s: an object needs metadata.name", data)
		}
		m["apiVersion"], m["kind"] = res.apiVersion(), res.Kind
		r.objs = append(r.objs, m)
	}
	return nil
}

// Forbid makes requests for objects with this name (the last element of
// the path) answer 403, as RBAC does, whether they exist or not.
func (s *Server) Forbid(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.forbidden[name] = true
}

// Requests returns "METHOD path?query" of every request so far.
func (s *Server) Requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.requests...)
}

// RESTConfig returns a client configuration for the server.
func (s *Server) RESTConfig() *rest.Config { return &rest.Config{Host: s.URL} }

// WriteKubeconfig writes a kubeconfig file for the server to path.
func (s *Server) WriteKubeconfig(path string) error {
	return os.WriteFile(path, []byte(Kubeconfig(s.URL)), 0o600)
}

// Kubeconfig is the text of a kubeconfig for the API server at url.
func Kubeconfig(url string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: %q}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`, url)
}

func metadata(obj map[string]any, key string) string {
	md, _ := obj["metadata"].(map[string]any)
	v, _ := md[key].(string)
	return v
}

// route splits a path into the resource, the namespace ("" for all) and
// the object name ("" for the collection).
func (s *Server) route(path string) (Resource, *resource, string, string, bool) {
	for res, r := range s.resources {
		tail, ok := strings.CutPrefix(path, res.prefix()+"/")
		if !ok {
			continue
		}
		ns := ""
		if after, ok := strings.CutPrefix(tail, "namespaces/"); ok {
			var found bool
			if ns, tail, found = strings.Cut(after, "/"); !found {
				continue
			}
		}
		name := ""
		if after, ok := strings.CutPrefix(tail, res.Resource); ok && (after == "" || after[0] == '/') {
			name = strings.TrimPrefix(after, "/")
			return res, r, ns, name, true
		}
	}
	return Resource{}, nil, "", "", false
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests = append(s.requests, r.Method+" "+r.URL.RequestURI())
	res, rs, ns, name, ok := s.route(r.URL.Path)
	var objs []map[string]any
	if ok {
		for _, o := range rs.objs {
			if (ns == "" || metadata(o, "namespace") == ns) && (name == "" || metadata(o, "name") == name) {
				objs = append(objs, o)
			}
		}
	}
	forbidden := s.forbidden[r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]]
	s.mu.Unlock()

	w.Header().Set("Content-Type", "application/json")
	switch {
	case r.Method != http.MethodGet:
		status(w, http.StatusMethodNotAllowed, "MethodNotAllowed", r.Method+" is not served")
	case forbidden:
		status(w, http.StatusForbidden, "Forbidden", r.URL.Path+" is forbidden")
	case !ok:
		status(w, http.StatusNotFound, "NotFound", "the server could not find the requested resource")
	case name != "":
		if len(objs) == 0 {
			status(w, http.StatusNotFound, "NotFound", res.Resource+" "+name+" not found")
			return
		}
		json.NewEncoder(w).Encode(objs[0])
	case r.URL.Query().Get("watch") == "true" || r.URL.Query().Get("watch") == "1":
		s.watch(w, r)
	default:
		if objs == nil {
			objs = []map[string]any{}
		}
		json.NewEncoder(w).Encode(map[string]any{
			"apiVersion": res.apiVersion(), "kind": res.Kind + "List",
			"metadata": map[string]any{"resourceVersion": "1"}, "items": objs,
		})
	}
}

func (s *Server) watch(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Get("sendInitialEvents") == "true" {
		// client-go then falls back to LIST and WATCH.
		status(w, http.StatusUnprocessableEntity, "Invalid", "sendInitialEvents: this fake does not stream lists")
		return
	}
	w.WriteHeader(http.StatusOK)
	w.(http.Flusher).Flush()
	select {
	case <-r.Context().Done():
	case <-s.done:
	}
}

func status(w http.ResponseWriter, code int, reason, msg string) {
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]any{
		"kind": "Status", "apiVersion": "v1", "status": "Failure",
		"reason": reason, "code": code, "message": msg,
	})
}

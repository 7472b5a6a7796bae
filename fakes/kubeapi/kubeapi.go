// Package kubeapi is a small fake Kubernetes API server for tests, on
// 127.0.0.1 over plain HTTP, written with net/http and encoding/json only.
// It answers what podvisor's clients ask:
//
//   - GET of one object (runtime/kube's ConfigMap and Secret reads);
//   - LIST of a resource, in all namespaces or in one, at the server's
//     current resourceVersion;
//   - WATCH of a resource from a resourceVersion: the ADDED, MODIFIED and
//     DELETED events after it, then new ones as Add, Update and Delete make
//     them, until the client, the server or timeoutSeconds ends it. A
//     streaming list (sendInitialEvents=true) is refused with 422, as by a
//     server without that feature.
//
// A resource that was never Added answers 404, as one whose CRD is not
// installed does; Add a resource late to model a CRD installed after
// start-up. Like the API server, the fake sets metadata.resourceVersion
// (one counter for all objects) and, when absent, metadata.uid.
package kubeapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/podvisor/podvisor/runtime/kube/apiclient"
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
	rv        int // the last resourceVersion given
	resources map[Resource]*resource
	forbidden map[string]bool
	requests  []string
	wake      chan struct{} // closed and replaced at each change
}

type resource struct {
	objs   []map[string]any // in the order added
	events []event          // every change, for watches
}

type event struct {
	rv  int
	typ string
	obj map[string]any
}

// New starts a server; Close stops it.
func New() *Server {
	s := &Server{
		done:      make(chan struct{}),
		resources: map[Resource]*resource{},
		forbidden: map[string]bool{},
		wake:      make(chan struct{}),
	}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	s.URL = s.srv.URL
	return s
}

// Close ends open watches and stops the server.
func (s *Server) Close() {
	s.once.Do(func() { close(s.done) })
	s.srv.Close()
}

// Add serves res (from now on, even with no objects) and creates objs in
// it, each an ADDED event. An object is anything that marshals to JSON with
// metadata.name (and metadata.namespace for a namespaced resource);
// apiVersion and kind are filled in from res. Adding an object that exists
// is an error, as a create is.
func (s *Server) Add(res Resource, objs ...any) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.resources[res]
	if r == nil {
		r = &resource{}
		s.resources[res] = r
	}
	for _, o := range objs {
		m, err := s.object(res, o)
		if err != nil {
			return err
		}
		if r.find(m) >= 0 {
			return fmt.Errorf("kubeapi: %s %s/%s already exists", res.Resource, metadata(m, "namespace"), metadata(m, "name"))
		}
		md := m["metadata"].(map[string]any)
		if metadata(m, "uid") == "" {
			md["uid"] = fmt.Sprintf("uid-%d", s.rv+1)
		}
		r.objs = append(r.objs, m)
		s.changed(r, "ADDED", m)
	}
	return nil
}

// Update replaces the object of res with obj's namespace and name, a
// MODIFIED event; the uid is kept.
func (s *Server) Update(res Resource, obj any) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.resources[res]
	if r == nil {
		return fmt.Errorf("kubeapi: %s is not served", res.Resource)
	}
	m, err := s.object(res, obj)
	if err != nil {
		return err
	}
	i := r.find(m)
	if i < 0 {
		return fmt.Errorf("kubeapi: %s %s/%s not found", res.Resource, metadata(m, "namespace"), metadata(m, "name"))
	}
	m["metadata"].(map[string]any)["uid"] = metadata(r.objs[i], "uid")
	r.objs[i] = m
	s.changed(r, "MODIFIED", m)
	return nil
}

// Delete removes an object of res, a DELETED event.
func (s *Server) Delete(res Resource, namespace, name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.resources[res]
	if r == nil {
		return fmt.Errorf("kubeapi: %s is not served", res.Resource)
	}
	i := r.find(map[string]any{"metadata": map[string]any{"namespace": namespace, "name": name}})
	if i < 0 {
		return fmt.Errorf("kubeapi: %s %s/%s not found", res.Resource, namespace, name)
	}
	m := r.objs[i]
	r.objs = append(r.objs[:i], r.objs[i+1:]...)
	// The object's last state, at the resourceVersion of its deletion.
	md := map[string]any{}
	for k, v := range m["metadata"].(map[string]any) {
		md[k] = v
	}
	last := map[string]any{}
	for k, v := range m {
		last[k] = v
	}
	last["metadata"] = md
	s.changed(r, "DELETED", last)
	return nil
}

// object turns o into a JSON object of res at the next resourceVersion.
func (s *Server) object(res Resource, o any) (map[string]any, error) {
	data, err := json.Marshal(o)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, err
	}
	if metadata(m, "name") == "" {
		return nil, fmt.Errorf("kubeapi: %s: an object needs metadata.name", data)
	}
	m["apiVersion"], m["kind"] = res.apiVersion(), res.Kind
	return m, nil
}

// changed records a change at a new resourceVersion, which it sets in obj,
// and wakes the watches. s.mu is held.
func (s *Server) changed(r *resource, typ string, obj map[string]any) {
	s.rv++
	obj["metadata"].(map[string]any)["resourceVersion"] = strconv.Itoa(s.rv)
	r.events = append(r.events, event{rv: s.rv, typ: typ, obj: obj})
	close(s.wake)
	s.wake = make(chan struct{})
}

func (r *resource) find(obj map[string]any) int {
	for i, o := range r.objs {
		if metadata(o, "namespace") == metadata(obj, "namespace") && metadata(o, "name") == metadata(obj, "name") {
			return i
		}
	}
	return -1
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

// Config returns a client configuration for the server.
func (s *Server) Config() *apiclient.Config { return &apiclient.Config{Server: s.URL} }

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

func inNamespace(obj map[string]any, ns string) bool {
	return ns == "" || metadata(obj, "namespace") == ns
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests = append(s.requests, r.Method+" "+r.URL.RequestURI())
	res, rs, ns, name, ok := s.route(r.URL.Path)
	var objs []map[string]any
	if ok {
		for _, o := range rs.objs {
			if inNamespace(o, ns) && (name == "" || metadata(o, "name") == name) {
				objs = append(objs, o)
			}
		}
	}
	rv := s.rv
	forbidden := s.forbidden[r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]]
	s.mu.Unlock()

	w.Header().Set("Content-Type", "application/json")
	switch {
	case forbidden:
		status(w, http.StatusForbidden, "Forbidden", r.URL.Path+" is forbidden")
	case r.Method == http.MethodPatch && ok && name != "":
		s.patch(w, r, rs, ns, name)
	case r.Method != http.MethodGet:
		status(w, http.StatusMethodNotAllowed, "MethodNotAllowed", r.Method+" is not served")
	case !ok:
		status(w, http.StatusNotFound, "NotFound", "the server could not find the requested resource")
	case name != "":
		if len(objs) == 0 {
			status(w, http.StatusNotFound, "NotFound", res.Resource+" "+name+" not found")
			return
		}
		json.NewEncoder(w).Encode(objs[0])
	case r.URL.Query().Get("watch") == "true" || r.URL.Query().Get("watch") == "1":
		s.watch(w, r, rs, ns, rv)
	default:
		if objs == nil {
			objs = []map[string]any{}
		}
		json.NewEncoder(w).Encode(map[string]any{
			"apiVersion": res.apiVersion(), "kind": res.Kind + "List",
			"metadata": map[string]any{"resourceVersion": strconv.Itoa(rv)}, "items": objs,
		})
	}
}

// watch streams the events of rs in namespace ns (all if "") after the
// request's resourceVersion (now, rv, if it has none).
func (s *Server) watch(w http.ResponseWriter, r *http.Request, rs *resource, ns string, rv int) {
	q := r.URL.Query()
	if q.Get("sendInitialEvents") == "true" {
		status(w, http.StatusUnprocessableEntity, "Invalid", "sendInitialEvents: this fake does not stream lists")
		return
	}
	from := rv
	if v := q.Get("resourceVersion"); v != "" && v != "0" {
		n, err := strconv.Atoi(v)
		if err != nil {
			status(w, http.StatusBadRequest, "BadRequest", "resourceVersion "+v+" is not a number")
			return
		}
		from = n
	}
	var timeout <-chan time.Time
	if v := q.Get("timeoutSeconds"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			status(w, http.StatusBadRequest, "BadRequest", "timeoutSeconds "+v+" is not a number")
			return
		}
		t := time.NewTimer(time.Duration(n) * time.Second)
		defer t.Stop()
		timeout = t.C
	}
	w.WriteHeader(http.StatusOK)
	w.(http.Flusher).Flush()
	enc := json.NewEncoder(w)
	for {
		s.mu.Lock()
		var evs []event
		for _, e := range rs.events {
			if e.rv > from && inNamespace(e.obj, ns) {
				evs = append(evs, e)
			}
		}
		if n := len(rs.events); n > 0 {
			from = max(from, rs.events[n-1].rv)
		}
		wake := s.wake
		s.mu.Unlock()
		// A recorded object is never changed: Update and Delete record
		// new maps.
		for _, e := range evs {
			if err := enc.Encode(map[string]any{"type": e.typ, "object": e.obj}); err != nil {
				return
			}
		}
		w.(http.Flusher).Flush()
		select {
		case <-wake:
		case <-timeout:
			return
		case <-r.Context().Done():
			return
		case <-s.done:
			return
		}
	}
}

func status(w http.ResponseWriter, code int, reason, msg string) {
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]any{
		"kind": "Status", "apiVersion": "v1", "status": "Failure",
		"reason": reason, "code": code, "message": msg,
	})
}

// patch applies a JSON merge patch (RFC 7386) to one object, a MODIFIED
// event, and answers with the result; other patch types are refused.
func (s *Server) patch(w http.ResponseWriter, r *http.Request, rs *resource, ns, name string) {
	if ct := r.Header.Get("Content-Type"); ct != "application/merge-patch+json" {
		status(w, http.StatusUnsupportedMediaType, "UnsupportedMediaType", "this fake serves application/merge-patch+json only, not "+ct)
		return
	}
	var p map[string]any
	if err := json.NewDecoder(r.Body).Decode(&p); err != nil {
		status(w, http.StatusBadRequest, "BadRequest", "the patch is not a JSON object: "+err.Error())
		return
	}
	s.mu.Lock()
	i := rs.find(map[string]any{"metadata": map[string]any{"namespace": ns, "name": name}})
	if i < 0 {
		s.mu.Unlock()
		status(w, http.StatusNotFound, "NotFound", name+" not found")
		return
	}
	m := mergePatch(rs.objs[i], p).(map[string]any)
	rs.objs[i] = m
	s.changed(rs, "MODIFIED", m)
	s.mu.Unlock()
	json.NewEncoder(w).Encode(m)
}

// mergePatch returns target with patch merged in (RFC 7386): objects merge
// key by key, null deletes, anything else replaces.
func mergePatch(target, patch any) any {
	p, ok := patch.(map[string]any)
	if !ok {
		return patch
	}
	t, _ := target.(map[string]any)
	out := map[string]any{}
	for k, v := range t {
		out[k] = v
	}
	for k, v := range p {
		if v == nil {
			delete(out, k)
			continue
		}
		out[k] = mergePatch(out[k], v)
	}
	return out
}

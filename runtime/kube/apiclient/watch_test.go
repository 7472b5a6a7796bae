package apiclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/google/go-cmp/cmp"
)

const mappingsPath = "/apis/virtlet.k8s/v1/namespaces/ns/virtletimagemappings"

// fakeAPI serves one collection as the API server does: lists, and
// watches from a resourceVersion that stream the recorded events after it
// and then new ones as they happen.
type fakeAPI struct {
	mu       sync.Mutex
	rv       int
	objs     map[string]json.RawMessage // by name
	history  []fakeEvent
	oldest   int // watches from an older resourceVersion are 410 Gone
	goneAs   string
	requests []string
	// The next failLists lists and failWatches watches are answered
	// failCode (500 if 0).
	failLists, failWatches, failCode int
	// failEvent, if set, is sent as the only event of the next watch.
	failEvent json.RawMessage
	// silent watches send nothing, ever.
	silent    bool
	hangLists bool
	sent      int           // the highest resourceVersion written to a watch
	wake      chan struct{} // closed and replaced at each change
	end       chan struct{} // closed and replaced by endStreams
}

type fakeEvent struct {
	rv  int
	typ string
	obj json.RawMessage
}

func newFakeAPI() *fakeAPI {
	return &fakeAPI{rv: 1, objs: map[string]json.RawMessage{}, wake: make(chan struct{}), end: make(chan struct{})}
}

func (f *fakeAPI) object(name, spec string) json.RawMessage {
	return json.RawMessage(fmt.Sprintf(`{"apiVersion":"virtlet.k8s/v1","kind":"VirtletImageMapping",`+
		`"metadata":{"name":%q,"namespace":"ns","uid":"uid-%s","resourceVersion":"%d"},"spec":{"v":%q}}`,
		name, name, f.rv, spec))
}

// change makes a change at a new resourceVersion and records its event,
// unless compacted: then it is as if etcd had compacted the event away.
func (f *fakeAPI) change(typ, name, spec string, compacted bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rv++
	obj := f.object(name, spec)
	switch typ {
	case "DELETED":
		delete(f.objs, name)
	case "BOOKMARK":
		obj = json.RawMessage(fmt.Sprintf(`{"kind":"VirtletImageMapping","apiVersion":"virtlet.k8s/v1","metadata":{"resourceVersion":"%d"}}`, f.rv))
	default:
		f.objs[name] = obj
	}
	if !compacted {
		f.history = append(f.history, fakeEvent{rv: f.rv, typ: typ, obj: obj})
	}
	close(f.wake)
	f.wake = make(chan struct{})
}

func (f *fakeAPI) put(name, spec string) {
	f.mu.Lock()
	typ := "MODIFIED"
	if f.objs[name] == nil {
		typ = "ADDED"
	}
	f.mu.Unlock()
	f.change(typ, name, spec, false)
}

func (f *fakeAPI) del(name string) { f.change("DELETED", name, "", false) }

func (f *fakeAPI) bookmark() { f.change("BOOKMARK", "", "", false) }

// expire makes watches from before now 410 Gone, as etcd compaction does.
func (f *fakeAPI) expire() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.oldest = f.rv
}

// endStreams ends the watches in progress, as the server's timeout does.
func (f *fakeAPI) endStreams() {
	f.mu.Lock()
	defer f.mu.Unlock()
	close(f.end)
	f.end = make(chan struct{})
}

func (f *fakeAPI) currentRV() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.rv
}

func (f *fakeAPI) log() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.requests)
}

func (f *fakeAPI) count(req string) int {
	n := 0
	for _, r := range f.log() {
		if r == req {
			n++
		}
	}
	return n
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer t" {
		writeStatus(w, http.StatusUnauthorized, "Unauthorized", "Unauthorized")
		return
	}
	if r.URL.Path != mappingsPath {
		writeStatus(w, http.StatusNotFound, "NotFound", "no such path "+r.URL.Path)
		return
	}
	if r.URL.Query().Get("watch") == "" {
		f.serveList(w, r)
	} else {
		f.serveWatch(w, r)
	}
}

func (f *fakeAPI) serveList(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.requests = append(f.requests, "list")
	if f.hangLists {
		f.mu.Unlock()
		<-r.Context().Done()
		return
	}
	if f.failLists > 0 {
		f.failLists--
		f.mu.Unlock()
		writeStatus(w, f.code(), "InternalError", "etcdserver: leader changed")
		return
	}
	names := make([]string, 0, len(f.objs))
	for n := range f.objs {
		names = append(names, n)
	}
	sort.Strings(names)
	items := make([]json.RawMessage, 0, len(names))
	for _, n := range names {
		items = append(items, f.objs[n])
	}
	body, _ := json.Marshal(map[string]any{
		"apiVersion": "virtlet.k8s/v1", "kind": "VirtletImageMappingList",
		"metadata": map[string]any{"resourceVersion": strconv.Itoa(f.rv)},
		"items":    items,
	})
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
}

func (f *fakeAPI) code() int {
	if f.failCode != 0 {
		return f.failCode
	}
	return http.StatusInternalServerError
}

func (f *fakeAPI) serveWatch(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f.mu.Lock()
	f.requests = append(f.requests, "watch rv="+q.Get("resourceVersion"))
	if q.Get("allowWatchBookmarks") != "true" || q.Get("timeoutSeconds") == "" {
		f.mu.Unlock()
		writeStatus(w, http.StatusBadRequest, "BadRequest", "want allowWatchBookmarks=true and timeoutSeconds, got "+r.URL.RawQuery)
		return
	}
	if f.failWatches > 0 {
		f.failWatches--
		f.mu.Unlock()
		writeStatus(w, f.code(), "", "watch failed")
		return
	}
	from, err := strconv.Atoi(q.Get("resourceVersion"))
	if err != nil {
		f.mu.Unlock()
		writeStatus(w, http.StatusBadRequest, "BadRequest", "bad resourceVersion")
		return
	}
	gone := from < f.oldest
	failEvent := f.failEvent
	silent := f.silent
	f.failEvent = nil
	end := f.end
	f.mu.Unlock()

	const goneMsg = "too old resource version"
	if gone && f.goneAs == "status" {
		writeStatus(w, http.StatusGone, "Expired", goneMsg)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	flush := func() { w.(http.Flusher).Flush() }
	flush()
	enc := json.NewEncoder(w)
	if gone {
		failEvent = json.RawMessage(`{"type":"ERROR","object":{"kind":"Status","code":410,"reason":"Expired","message":"` + goneMsg + `"}}`)
	}
	if failEvent != nil {
		_, _ = w.Write(append(failEvent, '\n'))
		return
	}
	if silent {
		<-r.Context().Done()
		return
	}
	sent := from
	for {
		f.mu.Lock()
		var evs []fakeEvent
		for _, e := range f.history {
			if e.rv > sent {
				evs = append(evs, e)
			}
		}
		wake := f.wake
		f.mu.Unlock()
		for _, e := range evs {
			_ = enc.Encode(map[string]any{"type": e.typ, "object": e.obj})
			sent = e.rv
		}
		flush()
		f.mu.Lock()
		f.sent = max(f.sent, sent)
		f.mu.Unlock()
		select {
		case <-wake:
		case <-end:
			return
		case <-r.Context().Done():
			return
		}
	}
}

// recorder is a Handler that keeps the objects and a log of the calls.
type recorder struct {
	mu    sync.Mutex
	objs  map[string]string // ns/name → spec.v
	calls []string
}

func (r *recorder) spec(o Object) string {
	var m struct {
		Spec struct{ V string } `json:"spec"`
	}
	if err := json.Unmarshal(o.Raw, &m); err != nil {
		return "undecodable: " + err.Error()
	}
	if o.UID != "uid-"+o.Name {
		return "bad uid " + o.UID
	}
	return m.Spec.V
}

func (r *recorder) Replace(objs []Object) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.objs = map[string]string{}
	var names []string
	for _, o := range objs {
		r.objs[o.Namespace+"/"+o.Name] = r.spec(o)
		names = append(names, o.Name)
	}
	r.calls = append(r.calls, "replace "+strings.Join(names, ","))
}

func (r *recorder) Upsert(o Object) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.objs[o.Namespace+"/"+o.Name] = r.spec(o)
	r.calls = append(r.calls, "upsert "+o.Name+"@"+o.ResourceVersion)
}

func (r *recorder) Delete(o Object) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.objs, o.Namespace+"/"+o.Name)
	r.calls = append(r.calls, "delete "+o.Name+"@"+o.ResourceVersion)
}

func (r *recorder) state() map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]string{}
	for k, v := range r.objs {
		out[k] = v
	}
	return out
}

func (r *recorder) log() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}

// watchTest is a Watcher of a fakeAPI, running until the test ends.
type watchTest struct {
	t    *testing.T
	api  *fakeAPI
	srv  *httptest.Server
	rec  *recorder
	w    *Watcher
	stop context.CancelFunc
	done chan error
}

// startWatch serves api over proto ("http" or "https", the latter with
// HTTP/2) and runs a Watcher of it with a 1 ms back-off; opts change the
// Watcher before Run.
func startWatch(t *testing.T, api *fakeAPI, proto string, opts ...func(*Watcher)) *watchTest {
	t.Helper()
	var srv *httptest.Server
	cfg := &Config{Token: "t"}
	switch proto {
	case "http":
		srv = httptest.NewServer(api)
	case "https":
		srv = httptest.NewUnstartedServer(api)
		srv.EnableHTTP2 = true
		srv.StartTLS()
		cfg.CAData = serverCAData(srv)
	}
	cfg.Server = srv.URL
	c := newTestClient(t, cfg)
	wt := &watchTest{t: t, api: api, srv: srv, rec: &recorder{}, done: make(chan error, 1)}
	wt.w = c.NewWatcher(mappingsPath, wt.rec)
	wt.w.Logger = slog.New(slog.NewTextHandler(testWriter{t}, nil))
	wt.w.newBackOff = func(time.Duration) backoff.BackOff { return backoff.NewConstantBackOff(time.Millisecond) }
	for _, o := range opts {
		o(wt.w)
	}
	ctx, cancel := context.WithCancel(context.Background())
	wt.stop = cancel
	go func() { wt.done <- wt.w.Run(ctx) }()
	t.Cleanup(func() {
		wt.stopAndWait()
		srv.Close()
	})
	return wt
}

// stopAndWait cancels the Watcher and waits for Run to return.
func (wt *watchTest) stopAndWait() error {
	wt.t.Helper()
	wt.stop()
	select {
	case err, ok := <-wt.done:
		if ok {
			close(wt.done)
		}
		return err
	case <-time.After(5 * time.Second):
		wt.t.Fatal("Run did not return within 5s of its context's end")
		return nil
	}
}

func (wt *watchTest) waitSynced() {
	wt.t.Helper()
	select {
	case <-wt.w.Synced():
	case <-time.After(10 * time.Second):
		wt.t.Fatalf("not synced; last error: %v", wt.w.LastError())
	}
}

// waitState waits until the handler holds want.
func (wt *watchTest) waitState(want map[string]string) {
	wt.t.Helper()
	waitFor(wt.t, func() string {
		return fmt.Sprintf("handler state (-want +got):\n%s\ncalls: %q\nrequests: %q",
			cmp.Diff(want, wt.rec.state()), wt.rec.log(), wt.api.log())
	}, func() bool { return cmp.Equal(want, wt.rec.state()) })
}

// waitRequest waits until the API server saw req at least n times.
func (wt *watchTest) waitRequest(req string, n int) {
	wt.t.Helper()
	waitFor(wt.t, func() string { return fmt.Sprintf("%d× %q; requests: %q", n, req, wt.api.log()) },
		func() bool { return wt.api.count(req) >= n })
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func TestWatch(t *testing.T) {
	for _, proto := range []string{"http", "https"} {
		t.Run(proto, func(t *testing.T) {
			api := newFakeAPI()
			api.put("a", "a1")
			api.put("b", "b1")
			listRV := api.currentRV()
			wt := startWatch(t, api, proto)
			wt.waitSynced()
			if diff := cmp.Diff(map[string]string{"ns/a": "a1", "ns/b": "b1"}, wt.rec.state()); diff != "" {
				t.Fatalf("after the list (-want +got):\n%s", diff)
			}
			wt.waitRequest("watch rv="+strconv.Itoa(listRV), 1)

			api.put("c", "c1")
			api.put("a", "a2")
			api.del("b")
			wt.waitState(map[string]string{"ns/a": "a2", "ns/c": "c1"})
			want := []string{"replace a,b", "upsert c@4", "upsert a@5", "delete b@6"}
			if diff := cmp.Diff(want, wt.rec.log()); diff != "" {
				t.Errorf("handler calls (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]string{"list", "watch rv=3"}, api.log()); diff != "" {
				t.Errorf("requests (-want +got):\n%s", diff)
			}
			if err := wt.w.LastError(); err != nil {
				t.Errorf("LastError: %v", err)
			}
		})
	}
}

// A watch that ends (the server's timeout) is resumed from the last
// resourceVersion seen, a bookmark's included, without a relist.
func TestWatchResumes(t *testing.T) {
	api := newFakeAPI()
	api.put("a", "a1")
	wt := startWatch(t, api, "http")
	wt.waitSynced()
	wt.waitRequest("watch rv=2", 1)

	api.put("a", "a2") // rv 3
	wt.waitState(map[string]string{"ns/a": "a2"})
	api.endStreams()
	wt.waitRequest("watch rv=3", 1)

	api.bookmark() // rv 4
	api.put("b", "b1")
	wt.waitState(map[string]string{"ns/a": "a2", "ns/b": "b1"})
	api.endStreams()
	wt.waitRequest("watch rv=5", 1)

	api.bookmark() // rv 6
	waitFor(t, func() string { return "bookmark not sent" }, func() bool {
		api.mu.Lock()
		defer api.mu.Unlock()
		return api.sent == 6
	})
	api.endStreams()
	wt.waitRequest("watch rv=6", 1)

	api.put("c", "c1") // rv 7
	wt.waitState(map[string]string{"ns/a": "a2", "ns/b": "b1", "ns/c": "c1"})
	if n := api.count("list"); n != 1 {
		t.Errorf("%d lists, want 1; requests: %q", n, api.log())
	}
	want := []string{"replace a", "upsert a@3", "upsert b@5", "upsert c@7"}
	if diff := cmp.Diff(want, wt.rec.log()); diff != "" {
		t.Errorf("handler calls (-want +got):\n%s", diff)
	}
}

// A watch answered 410 Gone, by the HTTP status or an ERROR event, makes
// the Watcher list again and replace the handler's state.
func TestWatchGoneRelists(t *testing.T) {
	for _, goneAs := range []string{"status", "event"} {
		t.Run(goneAs, func(t *testing.T) {
			api := newFakeAPI()
			api.goneAs = goneAs
			api.put("a", "a1")
			api.put("b", "b1")
			wt := startWatch(t, api, "http")
			wt.waitSynced()
			wt.waitRequest("watch rv=3", 1)

			// Changes while the watch is down, compacted away.
			api.change("DELETED", "b", "", true)
			api.change("ADDED", "c", "c1", true)
			api.expire()
			api.endStreams()

			wt.waitState(map[string]string{"ns/a": "a1", "ns/c": "c1"})
			wt.waitRequest("watch rv=5", 1)
			want := []string{"list", "watch rv=3", "watch rv=3", "list", "watch rv=5"}
			if diff := cmp.Diff(want, api.log()); diff != "" {
				t.Errorf("requests (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]string{"replace a,b", "replace a,c"}, wt.rec.log()); diff != "" {
				t.Errorf("handler calls (-want +got):\n%s", diff)
			}
		})
	}
}

// Until the first list succeeds, Synced stays open and LastError says why.
func TestWatchListRetried(t *testing.T) {
	api := newFakeAPI()
	api.put("a", "a1")
	api.failLists = 1 << 30
	wt := startWatch(t, api, "http")
	wt.waitRequest("list", 3)
	select {
	case <-wt.w.Synced():
		t.Fatal("synced while lists fail")
	default:
	}
	wantErr := "listing " + wt.srv.URL + mappingsPath + ": 500 Internal Server Error (InternalError): etcdserver: leader changed"
	if err := wt.w.LastError(); err == nil || err.Error() != wantErr {
		t.Fatalf("LastError %v, want %s", err, wantErr)
	}
	api.mu.Lock()
	api.failLists = 0
	api.mu.Unlock()
	wt.waitSynced()
	wt.waitState(map[string]string{"ns/a": "a1"})
	wt.waitRequest("watch rv=2", 1)
	waitFor(t, func() string { return fmt.Sprint("LastError: ", wt.w.LastError()) }, func() bool { return wt.w.LastError() == nil })
}

// A failed watch is retried from the same resourceVersion if the failure
// may pass (the connection, 5xx, 429); other failures relist.
func TestWatchFailures(t *testing.T) {
	tests := []struct {
		name       string
		code       int
		event      string
		wantRelist bool
	}{
		{name: "500", code: 500},
		{name: "503", code: 503},
		{name: "429", code: 429},
		{name: "403", code: 403, wantRelist: true},
		{name: "ERROR event 500", event: `{"type":"ERROR","object":{"kind":"Status","code":500,"message":"internal error"}}`, wantRelist: true},
		{name: "unknown event type", event: `{"type":"SURPRISE","object":{}}`, wantRelist: true},
		{name: "event without resourceVersion", event: `{"type":"ADDED","object":{"metadata":{"name":"x"}}}`, wantRelist: true},
		{name: "event without name", event: `{"type":"ADDED","object":{"metadata":{"resourceVersion":"9"}}}`, wantRelist: true},
		{name: "event not JSON", event: `{"type":"ADDED","object":{"metadata":`, wantRelist: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			api := newFakeAPI()
			api.put("a", "a1")
			wt := startWatch(t, api, "http")
			wt.waitSynced()
			wt.waitRequest("watch rv=2", 1)

			// Fail the next watch: a bad event once; a status once if that
			// relists, twice if not.
			fails := 1
			api.mu.Lock()
			switch {
			case tt.event != "":
				api.failEvent = json.RawMessage(tt.event)
			case !tt.wantRelist:
				fails = 2
				fallthrough
			default:
				api.failWatches, api.failCode = fails, tt.code
			}
			api.mu.Unlock()
			api.endStreams()
			want := []string{"list", "watch rv=2"}
			for range fails {
				want = append(want, "watch rv=2")
				if tt.wantRelist {
					want = append(want, "list")
				}
			}
			want = append(want, "watch rv=2")
			wt.waitRequest("watch rv=2", len(want)-strings.Count(strings.Join(want, " "), "list"))
			api.put("b", "b1") // rv 3
			wt.waitState(map[string]string{"ns/a": "a1", "ns/b": "b1"})
			if diff := cmp.Diff(want, api.log()); diff != "" {
				t.Errorf("requests (-want +got):\n%s", diff)
			}
		})
	}
}

// A watch that the server keeps open without a word (a half-open
// connection, say) is ended by the client some time after the
// timeoutSeconds it asked for, and resumed.
func TestWatchClientTimeout(t *testing.T) {
	api := newFakeAPI()
	api.put("a", "a1")
	api.silent = true
	wt := startWatch(t, api, "http", func(w *Watcher) { w.minTimeout, w.grace = 100*time.Millisecond, 50*time.Millisecond })
	wt.waitSynced()
	wt.waitRequest("watch rv=2", 3)
	if n := api.count("list"); n != 1 {
		t.Errorf("%d lists, want 1; requests: %q", n, api.log())
	}
}

// A stream that is cut (not ended cleanly) resumes from the last
// resourceVersion.
func TestWatchConnectionCut(t *testing.T) {
	api := newFakeAPI()
	api.put("a", "a1")
	wt := startWatch(t, api, "http")
	wt.waitSynced()
	wt.waitRequest("watch rv=2", 1)
	api.put("a", "a2")
	wt.waitState(map[string]string{"ns/a": "a2"})
	wt.srv.CloseClientConnections()
	wt.waitRequest("watch rv=3", 1)
	api.put("b", "b1")
	wt.waitState(map[string]string{"ns/a": "a2", "ns/b": "b1"})
	if n := api.count("list"); n != 1 {
		t.Errorf("%d lists, want 1; requests: %q", n, api.log())
	}
}

// A server that ends every watch at once without an event is not
// hammered: each such watch is followed by a back-off.
func TestWatchEmptyStreamBacksOff(t *testing.T) {
	var watches atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("watch") == "" {
			_, _ = w.Write([]byte(`{"metadata":{"resourceVersion":"1"},"items":[]}`))
			return
		}
		watches.Add(1) // and an empty 200
	}))
	t.Cleanup(srv.Close)
	c := newTestClient(t, &Config{Server: srv.URL})
	w := c.NewWatcher("/x", &recorder{})
	w.Logger = slog.New(slog.DiscardHandler)
	b := &countingBackOff{}
	w.newBackOff = func(time.Duration) backoff.BackOff { return b }
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { _ = w.Run(ctx); close(done) }()
	waitFor(t, func() string { return "fewer than 5 watches" }, func() bool { return watches.Load() >= 5 })
	if err := w.LastError(); err == nil || !strings.Contains(err.Error(), "the stream ended at once without an event") {
		t.Errorf("LastError %v", err)
	}
	cancel()
	<-done
	if n, m := b.next.Load(), watches.Load(); n < m-1 || b.resets.Load() != 0 {
		t.Errorf("%d back-offs and %d resets for %d empty watches, want a back-off after each, no reset", n, b.resets.Load(), m)
	}
}

type countingBackOff struct{ next, resets atomic.Int32 }

func (b *countingBackOff) NextBackOff() time.Duration { b.next.Add(1); return time.Millisecond }
func (b *countingBackOff) Reset()                     { b.resets.Add(1) }

// Cancelling the context stops Run promptly wherever it is, leaving no
// goroutine behind.
func TestWatchStops(t *testing.T) {
	tests := []struct {
		name  string
		setup func(*fakeAPI)
		ready func(*watchTest)
	}{
		{name: "watching", ready: func(wt *watchTest) { wt.waitSynced(); wt.waitRequest("watch rv=1", 1) }},
		{name: "listing", setup: func(a *fakeAPI) { a.hangLists = true }, ready: func(wt *watchTest) { wt.waitRequest("list", 1) }},
		{name: "backing off", setup: func(a *fakeAPI) { a.failLists = 1 }, ready: func(wt *watchTest) {
			waitFor(t, func() string { return "no failed list" }, func() bool { return wt.w.LastError() != nil })
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			api := newFakeAPI()
			if tt.setup != nil {
				tt.setup(api)
			}
			wt := startWatch(t, api, "https", func(w *Watcher) {
				w.newBackOff = func(time.Duration) backoff.BackOff { return backoff.NewConstantBackOff(time.Hour) }
			})
			tt.ready(wt)
			start := time.Now()
			err := wt.stopAndWait()
			if !errors.Is(err, context.Canceled) {
				t.Errorf("Run: %v, want context.Canceled", err)
			}
			if d := time.Since(start); d > time.Second {
				t.Errorf("Run took %v to return", d)
			}
			wt.srv.Close()
			checkNoLeaks(t)
		})
	}
}

// checkNoLeaks waits until no goroutine runs this package's code (but
// tests) or holds an HTTP client connection.
func checkNoLeaks(t *testing.T) {
	t.Helper()
	var leaked []string
	waitFor(t, func() string { return "leaked goroutines:\n\n" + strings.Join(leaked, "\n\n") }, func() bool {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		leaked = nil
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, "apiclient.(*") || strings.Contains(g, "net/http.(*persistConn)") ||
				strings.Contains(g, "net/http.(*http2ClientConn)") {
				leaked = append(leaked, g)
			}
		}
		return len(leaked) == 0
	})
}

func TestWatchBadPath(t *testing.T) {
	c := newTestClient(t, &Config{Server: "http://127.0.0.1:1"})
	err := c.NewWatcher("relative", &recorder{}).Run(t.Context())
	if err == nil || !strings.Contains(err.Error(), `watching relative: "relative" is not an absolute path`) {
		t.Fatalf("Run: %v", err)
	}
}

// scaledBackOff waits its cap / 60000 (30 s → 0.5 ms, 7 min → 7 ms), so
// that a wait tells which cap the Watcher chose.
type scaledBackOff struct{ max time.Duration }

func (b scaledBackOff) NextBackOff() time.Duration { return b.max / 60000 }
func (b scaledBackOff) Reset()                     {}

// Attempts answered 404 (a CRD not installed) back off up to
// NotFoundMaxBackOff when it is set, other failures up to 30 s; OnError
// is told of each failure instead of a warning being logged.
func TestWatchNotFound(t *testing.T) {
	const notFoundCap = 7 * time.Minute
	tests := []struct {
		name     string
		code     int
		cap      time.Duration
		onError  bool
		wantWait time.Duration
	}{
		{name: "404 with NotFoundMaxBackOff", code: 404, cap: notFoundCap, onError: true, wantWait: notFoundCap / 60000},
		{name: "404 without", code: 404, onError: true, wantWait: maxBackOff / 60000},
		{name: "500 with NotFoundMaxBackOff", code: 500, cap: notFoundCap, onError: true, wantWait: maxBackOff / 60000},
		{name: "404 without OnError", code: 404, cap: notFoundCap, wantWait: notFoundCap / 60000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			api := newFakeAPI()
			api.put("a", "a1")
			api.failLists, api.failCode = 3, tt.code
			var (
				mu    sync.Mutex
				caps  []time.Duration
				waits []time.Duration
				errs  []error
				logs  lockedBuffer
			)
			wt := startWatch(t, api, "http", func(w *Watcher) {
				w.Logger = slog.New(slog.NewTextHandler(&logs, nil))
				w.NotFoundMaxBackOff = tt.cap
				w.minHealthy = 0 // the watch endStreams ends is no failure
				w.newBackOff = func(max time.Duration) backoff.BackOff {
					mu.Lock()
					defer mu.Unlock()
					caps = append(caps, max)
					return scaledBackOff{max}
				}
				if tt.onError {
					w.OnError = func(err error, wait time.Duration) {
						mu.Lock()
						defer mu.Unlock()
						errs, waits = append(errs, err), append(waits, wait)
					}
				}
			})
			wt.waitSynced()
			wt.waitRequest("watch rv=2", 1)
			if tt.code == 404 && tt.cap > 0 {
				// The CRD goes and comes back: the watch and two lists
				// are answered 404, then the CRD is served again.
				api.mu.Lock()
				api.failWatches, api.failLists = 1, 2
				api.mu.Unlock()
				api.endStreams()
				wt.waitRequest("list", 4)
				wt.waitRequest("watch rv=2", 3)
			}
			mu.Lock()
			defer mu.Unlock()
			wantCaps := []time.Duration{maxBackOff}
			nErrs := 3
			if tt.code == 404 && tt.cap > 0 {
				// One back-off for each run of 404s.
				wantCaps = append(wantCaps, tt.cap, tt.cap)
				nErrs = 6
			}
			if diff := cmp.Diff(wantCaps, caps); diff != "" {
				t.Errorf("back-offs made with caps (-want +got):\n%s", diff)
			}
			if !tt.onError {
				if n := strings.Count(logs.String(), "level=WARN msg=\"kubernetes list/watch failed, retrying\""); n != nErrs {
					t.Errorf("%d warnings logged without OnError, want %d:\n%s", n, nErrs, logs.String())
				}
				return
			}
			if strings.Contains(logs.String(), "level=WARN") {
				t.Errorf("a warning was logged though OnError is set:\n%s", logs.String())
			}
			if len(errs) != nErrs {
				t.Fatalf("OnError called %d times, want %d: %v", len(errs), nErrs, errs)
			}
			for i, err := range errs {
				if errors.Is(err, ErrNotFound) != (tt.code == 404) {
					t.Errorf("OnError #%d: %v; errors.Is(ErrNotFound) should be %v", i, err, tt.code == 404)
				}
				if waits[i] != tt.wantWait {
					t.Errorf("OnError #%d: wait %v, want %v", i, waits[i], tt.wantWait)
				}
			}
		})
	}
}

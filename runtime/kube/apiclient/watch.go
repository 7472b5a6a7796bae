package apiclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
)

const (
	// A watch asks the server to end it after a random 5 to 10 minutes (as
	// client-go's reflector does), spreading the re-watches of many nodes;
	// watchGrace later the client ends it itself, in case the server or
	// the path to it is gone without a word.
	minWatchTimeout = 5 * time.Minute
	watchGrace      = 30 * time.Second
	// A watch that delivered no event and ended sooner than this is
	// treated as a failure (retried after a back-off), so that a server
	// that ends every watch at once is not hammered.
	minHealthyWatch = time.Second
	// maxBackOff caps the wait between failed attempts.
	maxBackOff = 30 * time.Second
)

// Object is one object of a watched collection.
type Object struct {
	Namespace, Name, UID, ResourceVersion string
	// Raw is the whole object as the API server sent it, for the caller to
	// decode. (Items of lists of built-in kinds have no kind/apiVersion.)
	Raw json.RawMessage
}

// Handler receives a Watcher's view of the collection. Its methods are
// called one at a time, from the goroutine running Watcher.Run.
type Handler interface {
	// Replace sets the whole collection, after a (re)list.
	Replace(objs []Object)
	// Upsert adds an object or replaces the one with its namespace and name.
	Upsert(obj Object)
	// Delete removes an object; obj is its last state.
	Delete(obj Object)
}

// A Watcher keeps a Handler in step with a collection, as client-go's
// reflector does: it lists the collection, then watches it from the list's
// resourceVersion (with bookmarks); resumes a watch that ended from the
// last resourceVersion seen; relists when that is too old (410 Gone) or
// the watch failed for good (4xx, an ERROR event, a bad event); resumes
// the watch after a failure that may pass (a connection error, 5xx, 429).
// Every retry, relists included, waits for an exponential back-off from
// 0.5 s to 30 s, which a watch that delivered events resets; while the
// collection is answered 404 (a custom resource whose CRD is not
// installed) the cap can be raised with NotFoundMaxBackOff. It keeps
// trying until its context ends.
type Watcher struct {
	// Logger receives failed attempts and relists; nil means
	// slog.Default(). Set it before Run.
	Logger *slog.Logger

	// OnError, when set, is called with each failed list or watch and the
	// wait before the next attempt, instead of the Watcher logging it as a
	// warning: the caller chooses what is worth a warning (a missing CRD
	// may not be). It is called on Run's goroutine, like the Handler. A
	// watch whose resourceVersion expired (410 Gone) is routine and is
	// only logged, at info level. Set it before Run.
	OnError func(err error, wait time.Duration)

	// NotFoundMaxBackOff, when above 0, caps the back-off between
	// attempts while they are answered 404 Not Found, instead of the 30 s
	// of other failures: a collection that is not served (its CRD is not
	// installed) may stay so for days. The back-off still starts at 0.5 s
	// and grows (each wait randomized by ±50 %, as every back-off here);
	// an attempt that is not answered 404 goes back to the usual back-off.
	// Set it before Run.
	NotFoundMaxBackOff time.Duration

	c    *Client
	path string
	h    Handler
	// newBackOff returns a back-off whose waits grow up to max; tests
	// replace it.
	newBackOff func(max time.Duration) backoff.BackOff
	minHealthy time.Duration
	// minTimeout and grace are minWatchTimeout and watchGrace; tests
	// shorten them.
	minTimeout, grace time.Duration

	syncOnce sync.Once
	synced   chan struct{}

	mu      sync.Mutex
	lastErr error
}

// NewWatcher returns a Watcher of the collection at path, e.g.
// /apis/virtlet.k8s/v1/namespaces/NS/virtletimagemappings or, for all
// namespaces, /apis/virtlet.k8s/v1/virtletimagemappings. A query in path
// (a labelSelector, say) is kept. Nothing happens until Run.
func (c *Client) NewWatcher(path string, h Handler) *Watcher {
	return &Watcher{
		c:    c,
		path: path,
		h:    h,
		newBackOff: func(max time.Duration) backoff.BackOff {
			b := backoff.NewExponentialBackOff()
			b.InitialInterval = 500 * time.Millisecond
			b.MaxInterval = max
			b.MaxElapsedTime = 0 // never give up
			return b
		},
		minHealthy: minHealthyWatch,
		minTimeout: minWatchTimeout,
		grace:      watchGrace,
		synced:     make(chan struct{}),
	}
}

// Synced is closed once the first list has been handed to Handler.Replace.
func (w *Watcher) Synced() <-chan struct{} { return w.synced }

// LastError is the error of the last failed list or watch, nil after one
// succeeded: why Synced is not closed yet, say.
func (w *Watcher) LastError() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lastErr
}

func (w *Watcher) setErr(err error) {
	w.mu.Lock()
	w.lastErr = err
	w.mu.Unlock()
}

// errGone is a watch's 410 Gone: its resourceVersion is too old.
var errGone = errors.New("resourceVersion expired")

// Run lists and watches until ctx ends, then returns context.Cause(ctx),
// wrapped. It returns at once if the path is not a valid absolute path.
// Call it once.
func (w *Watcher) Run(ctx context.Context) error {
	log := w.Logger
	if log == nil {
		log = slog.Default()
	}
	if _, err := w.c.url(w.path, nil); err != nil {
		return fmt.Errorf("watching %s: %w", w.path, err)
	}
	b := w.newBackOff(maxBackOff)
	var nb backoff.BackOff // while attempts are answered 404, if NotFoundMaxBackOff is set
	rv := ""               // "" means list
	for {
		var err error
		if rv == "" {
			rv, err = w.list(ctx)
		} else {
			rv, err = w.watch(ctx, rv, b)
		}
		if ctx.Err() != nil {
			return fmt.Errorf("watching %s: %w", w.path, context.Cause(ctx))
		}
		w.setErr(err)
		if err == nil {
			nb = nil
			continue // listed: watch; or a watch ended: resume it
		}
		var wait time.Duration
		if w.NotFoundMaxBackOff > 0 && errors.Is(err, ErrNotFound) {
			if nb == nil {
				nb = w.newBackOff(w.NotFoundMaxBackOff)
			}
			if wait = nb.NextBackOff(); wait == backoff.Stop {
				wait = w.NotFoundMaxBackOff
			}
		} else {
			nb = nil
			if wait = b.NextBackOff(); wait == backoff.Stop {
				wait = maxBackOff
			}
		}
		switch {
		case errors.Is(err, errGone):
			log.Info("kubernetes watch expired, relisting", "path", w.path, "wait", wait)
		case w.OnError != nil:
			w.OnError(err, wait)
		default:
			log.Warn("kubernetes list/watch failed, retrying", "path", w.path, "relist", rv == "", "wait", wait, "err", err)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("watching %s: %w", w.path, context.Cause(ctx))
		case <-t.C:
		}
	}
}

// list hands the whole collection to Handler.Replace and returns its
// resourceVersion.
func (w *Watcher) list(ctx context.Context) (string, error) {
	u, err := w.c.url(w.path, nil)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	resp, err := w.c.get(ctx, u)
	if err != nil {
		return "", fmt.Errorf("listing %s: %w", u, err)
	}
	defer resp.Body.Close()
	var list struct {
		Metadata struct {
			ResourceVersion string `json:"resourceVersion"`
		} `json:"metadata"`
		Items []json.RawMessage `json:"items"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		return "", fmt.Errorf("listing %s: decoding the response: %w", u, err)
	}
	if list.Metadata.ResourceVersion == "" {
		return "", fmt.Errorf("listing %s: the list has no metadata.resourceVersion", u)
	}
	objs := make([]Object, 0, len(list.Items))
	for i, raw := range list.Items {
		o, err := parseObject(raw)
		if err == nil && o.Name == "" {
			err = errors.New("object has no metadata.name")
		}
		if err != nil {
			return "", fmt.Errorf("listing %s: item %d: %w", u, i, err)
		}
		objs = append(objs, o)
	}
	w.h.Replace(objs)
	w.syncOnce.Do(func() { close(w.synced) })
	return list.Metadata.ResourceVersion, nil
}

// watch streams the events after resourceVersion rv to the Handler until
// the stream ends. It returns the resourceVersion to resume from, or "" if
// the collection must be listed again; and nil if the stream ended in good
// order. It resets b once the stream proved healthy.
func (w *Watcher) watch(ctx context.Context, rv string, b backoff.BackOff) (string, error) {
	timeout := w.minTimeout + rand.N(w.minTimeout)
	u, err := w.c.url(w.path, url.Values{
		"watch":               {"1"},
		"resourceVersion":     {rv},
		"allowWatchBookmarks": {"true"},
		"timeoutSeconds":      {strconv.Itoa(max(1, int(timeout/time.Second)))},
	})
	if err != nil {
		return "", err
	}
	short := *u
	short.RawQuery = ""
	where := fmt.Sprintf("watching %s from resourceVersion %s", &short, rv)
	wctx, cancel := context.WithTimeout(ctx, timeout+w.grace)
	defer cancel()
	start := time.Now()
	resp, err := w.c.get(wctx, u)
	if err != nil {
		return watchStartError(where, rv, err)
	}
	defer resp.Body.Close()

	events := 0
	healthy := func() bool { return events > 0 || time.Since(start) >= w.minHealthy }
	defer func() {
		if healthy() {
			b.Reset()
		}
	}()
	dec := json.NewDecoder(resp.Body)
	for {
		var ev watchEvent
		if err := dec.Decode(&ev); err != nil {
			// Ended by the server, or by our deadline?
			ended := err == io.EOF || (wctx.Err() != nil && ctx.Err() == nil)
			switch {
			case ended && healthy():
				return rv, nil
			case ended:
				return rv, fmt.Errorf("%s: the stream ended at once without an event", where)
			default:
				return rv, fmt.Errorf("%s: reading the stream: %w", where, err)
			}
		}
		events++
		if rv, err = w.apply(ev, rv); err != nil {
			return "", fmt.Errorf("%s: %w", where, err)
		}
	}
}

// watchStartError says whether a watch that could not start resumes from
// rv (transport errors, 429, 5xx) or must list again ("").
func watchStartError(where, rv string, err error) (string, error) {
	var se *StatusError
	switch {
	case !errors.As(err, &se):
		return rv, fmt.Errorf("%s: %w", where, err) // transport: try again
	case se.Code == http.StatusGone:
		return "", fmt.Errorf("%s: %w: %w", where, errGone, err)
	case se.Code == http.StatusTooManyRequests || se.Code >= 500:
		return rv, fmt.Errorf("%s: %w", where, err)
	default:
		return "", fmt.Errorf("%s: %w", where, err)
	}
}

// watchEvent is one line of a watch stream.
type watchEvent struct {
	Type   string          `json:"type"`
	Object json.RawMessage `json:"object"`
}

// apply hands one event to the Handler and returns the resourceVersion to
// resume from; an error means the collection must be listed again.
func (w *Watcher) apply(ev watchEvent, rv string) (string, error) {
	switch ev.Type {
	case "ADDED", "MODIFIED", "DELETED", "BOOKMARK":
		o, err := parseObject(ev.Object)
		switch {
		case err != nil:
		case o.ResourceVersion == "":
			err = errors.New("object has no metadata.resourceVersion")
		case o.Name == "" && ev.Type != "BOOKMARK":
			err = errors.New("object has no metadata.name")
		}
		if err != nil {
			return "", fmt.Errorf("%s event: %w", ev.Type, err)
		}
		switch ev.Type {
		case "ADDED", "MODIFIED":
			w.h.Upsert(o)
		case "DELETED":
			w.h.Delete(o)
		}
		return o.ResourceVersion, nil
	case "ERROR":
		var st status
		if err := json.Unmarshal(ev.Object, &st); err != nil {
			return "", fmt.Errorf("ERROR event: %w", err)
		}
		se := &StatusError{Code: st.Code, Reason: st.Reason, Message: st.Message}
		if se.Code == http.StatusGone {
			return "", fmt.Errorf("%w: %w", errGone, se)
		}
		return "", fmt.Errorf("ERROR event: %w", se)
	default:
		return "", fmt.Errorf("unknown event type %q", ev.Type)
	}
}

// parseObject reads the metadata of an object.
func parseObject(raw json.RawMessage) (Object, error) {
	var m struct {
		Metadata struct {
			Namespace       string `json:"namespace"`
			Name            string `json:"name"`
			UID             string `json:"uid"`
			ResourceVersion string `json:"resourceVersion"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return Object{}, fmt.Errorf("decoding an object's metadata: %w", err)
	}
	md := m.Metadata
	return Object{Namespace: md.Namespace, Name: md.Name, UID: md.UID, ResourceVersion: md.ResourceVersion, Raw: raw}, nil
}

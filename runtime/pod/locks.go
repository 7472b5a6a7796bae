package pod

import "sync"

// keyedLocker serializes operations on one object (a sandbox or container
// ID) while letting operations on different objects run in parallel: a
// StopContainer waiting out a grace period must not block other pods.
type keyedLocker struct {
	mu    sync.Mutex
	locks map[string]*keyedLock
}

type keyedLock struct {
	mu   sync.Mutex
	refs int
}

// tryLock locks key if it is free and returns its unlock function, or nil
// when another operation holds it.
func (k *keyedLocker) tryLock(key string) func() {
	k.mu.Lock()
	if l := k.locks[key]; l != nil {
		k.mu.Unlock()
		return nil
	}
	k.mu.Unlock()
	return k.lock(key)
}

// lock locks key and returns its unlock function.
func (k *keyedLocker) lock(key string) func() {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = map[string]*keyedLock{}
	}
	l := k.locks[key]
	if l == nil {
		l = &keyedLock{}
		k.locks[key] = l
	}
	l.refs++
	k.mu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		k.mu.Lock()
		l.refs--
		if l.refs == 0 {
			delete(k.locks, key)
		}
		k.mu.Unlock()
	}
}

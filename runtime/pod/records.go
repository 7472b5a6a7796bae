package pod

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"github.com/podvisor/podvisor/runtime/store"
)

// Records in the maps are never modified once published: a change is made
// on a copy, persisted, then swapped in, so readers need only the map lock.

func (m *Manager) getSandbox(id string) *Sandbox {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.sandboxes[id]
}

func (m *Manager) getContainer(id string) *Container {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.containers[id]
}

func (m *Manager) putSandbox(sb *Sandbox) error {
	data, err := json.Marshal(sb)
	if err != nil {
		return fmt.Errorf("encoding sandbox %s: %w", sb.ID, err)
	}
	if err := m.db.Batch([]store.Op{{Bucket: bucketSandboxes, Key: sb.ID, Value: data}}); err != nil {
		return fmt.Errorf("saving sandbox %s: %w", sb.ID, err)
	}
	m.mu.Lock()
	m.sandboxes[sb.ID] = sb
	m.sandboxOrder.put(sb)
	m.mu.Unlock()
	return nil
}

func (m *Manager) deleteSandbox(id string) error {
	if err := m.db.Batch([]store.Op{{Bucket: bucketSandboxes, Key: id, Delete: true}}); err != nil {
		return fmt.Errorf("deleting sandbox %s: %w", id, err)
	}
	m.mu.Lock()
	if sb := m.sandboxes[id]; sb != nil {
		m.sandboxOrder.remove(sb)
	}
	delete(m.sandboxes, id)
	m.mu.Unlock()
	return nil
}

func (m *Manager) putContainer(c *Container) error {
	data, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("encoding container %s: %w", c.ID, err)
	}
	if err := m.db.Batch([]store.Op{{Bucket: bucketContainers, Key: c.ID, Value: data}}); err != nil {
		return fmt.Errorf("saving container %s: %w", c.ID, err)
	}
	m.mu.Lock()
	m.containers[c.ID] = c
	m.containerOrder.put(c)
	m.byDomain[c.DomainName] = c.ID
	m.mu.Unlock()
	return nil
}

func (m *Manager) deleteContainer(id string) error {
	if err := m.db.Batch([]store.Op{{Bucket: bucketContainers, Key: id, Delete: true}}); err != nil {
		return fmt.Errorf("deleting container %s: %w", id, err)
	}
	m.mu.Lock()
	if c := m.containers[id]; c != nil {
		m.containerOrder.remove(c)
		if m.byDomain[c.DomainName] == id {
			delete(m.byDomain, c.DomainName)
		}
	}
	delete(m.containers, id)
	m.mu.Unlock()
	return nil
}

func (m *Manager) load() error {
	err := m.db.ForEach(bucketSandboxes, func(k string, v []byte) error {
		var sb Sandbox
		if err := json.Unmarshal(v, &sb); err != nil {
			return fmt.Errorf("decoding sandbox %s: %w", k, err)
		}
		m.sandboxes[sb.ID] = &sb
		m.sandboxOrder.put(&sb)
		return nil
	})
	if err != nil {
		return fmt.Errorf("loading sandboxes: %w", err)
	}
	err = m.db.ForEach(bucketContainers, func(k string, v []byte) error {
		var c Container
		if err := json.Unmarshal(v, &c); err != nil {
			return fmt.Errorf("decoding container %s: %w", k, err)
		}
		m.containers[c.ID] = &c
		m.containerOrder.put(&c)
		m.byDomain[c.DomainName] = c.ID
		return nil
	})
	if err != nil {
		return fmt.Errorf("loading containers: %w", err)
	}
	return nil
}

func newID() string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("reading random bytes: %v", err)) // crypto/rand does not fail on Linux
	}
	return hex.EncodeToString(b[:])
}

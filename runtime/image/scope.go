package image

import (
	"context"
	"fmt"
	"net/url"
	"strings"
)

// DefaultOperatorNamespace is the namespace whose VirtletImageMappings
// apply to every pod when Translations.OperatorNamespace is empty (where
// Virtlet kept them).
const DefaultOperatorNamespace = "kube-system"

// operatorNamespace is the namespace whose mappings apply to all pods.
func (t *Translations) operatorNamespace() string {
	if t.OperatorNamespace != "" {
		return t.OperatorNamespace
	}
	return DefaultOperatorNamespace
}

// TranslateIn translates name for a pod of namespace ("" when the pull
// names no pod, as crictl's): the operator's configs (the directory's
// files and the mappings of the operator's namespace) first, then, when
// none of them matches, the mappings of namespace itself. A tenant's
// mapping never applies to another namespace's pods, and the endpoint it
// gives carries its namespace (Endpoint.Namespace). A rule of a
// VirtletImageMapping object with a file:// URL or insecure TLS is refused.
func (t *Translations) TranslateIn(ctx context.Context, namespace, name string) (Endpoint, error) {
	if t == nil {
		return Endpoint{URL: name, Source: "no translation configs"}, nil
	}
	cfgs, err := t.Configs(ctx)
	if err != nil {
		return Endpoint{}, fmt.Errorf("translating image name %q: %w", name, err)
	}
	op := t.operatorNamespace()
	var operator, tenant []NamedConfig
	for _, nc := range cfgs {
		switch nc.Namespace {
		case "", op:
			operator = append(operator, nc)
		case namespace:
			tenant = append(tenant, nc)
		}
	}
	ep := translate(operator, name)
	if ep.Source == noMatch && len(tenant) > 0 {
		if tep := translate(tenant, name); tep.Source != noMatch {
			ep = tep
			ep.Namespace = namespace
		}
	}
	if ep.refused != nil {
		return Endpoint{}, fmt.Errorf("translating image name %q: %w", name, ep.refused)
	}
	return ep, nil
}

// noMatch is the Source of an endpoint no rule gave.
const noMatch = "no translation rule matched"

// objectRefusal says why rule i of nc may not be used: file:// URLs (a
// copy of any node file into the store) and insecure TLS are the
// operator's to allow, in the translation files, never a mapping object's.
func objectRefusal(nc NamedConfig, i int, r Rule, rawURL string) error {
	if nc.Origin != OriginObject {
		return nil
	}
	obj := "VirtletImageMapping " + strings.TrimPrefix(nc.Name, "mapping:")
	if u, err := url.Parse(rawURL); err == nil && strings.EqualFold(u.Scheme, "file") {
		return fmt.Errorf("%s translations[%d].url: %q: file:// URLs are accepted only from the operator's translation files (--image-translations-dir), not from VirtletImageMapping objects", obj, i, rawURL)
	}
	if tr := nc.Config.Transports[r.Transport]; tr.TLS != nil && tr.TLS.Insecure {
		return fmt.Errorf("%s transports.%s.tls.insecure: true: insecure TLS is accepted only from the operator's translation files (--image-translations-dir), not from VirtletImageMapping objects", obj, r.Transport)
	}
	return nil
}

// NamespacedTranslator is a Translator that knows which translations apply
// to a pod's namespace. *Translations implements it.
type NamespacedTranslator interface {
	TranslateIn(ctx context.Context, namespace, name string) (Endpoint, error)
}

// translate asks the store's translator about name for namespace.
func (s *Store) translate(ctx context.Context, namespace, name string) (Endpoint, error) {
	switch tr := s.tr.(type) {
	case nil:
		return Endpoint{URL: name, Source: "no translator"}, nil
	case NamespacedTranslator:
		return tr.TranslateIn(ctx, namespace, name)
	default:
		return tr.Translate(ctx, name)
	}
}

// scopedLink is the link name under which a pull through a tenant's
// mapping (namespace non-empty) stores link: "%ns%NAMESPACE%link". A link
// starting with '%' is the name of an absolute path, which parseName
// refuses, so no name kubelet gives can find or overwrite it.
func scopedLink(namespace, link string) (string, error) {
	if namespace == "" {
		return link, nil
	}
	if strings.ContainsAny(namespace, "%/\x00") || namespace == "." || namespace == ".." {
		return "", fmt.Errorf("namespace %q is not a Kubernetes namespace name", namespace)
	}
	l := "%ns%" + namespace + "%" + link
	if len(l) > 255 {
		return "", fmt.Errorf("is %d bytes long with namespace %s, at most 255 accepted", len(l), namespace)
	}
	return l, nil
}

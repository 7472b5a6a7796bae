package domain

import (
	"encoding/xml"
	"errors"
	"fmt"

	"libvirt.org/go/libvirtxml"
)

// MetadataNamespace is the XML namespace of podvisor's <metadata> element.
const MetadataNamespace = "urn:podvisor:domain:1"

// Metadata is what podvisor records in each domain about its owner, so that
// recovery after a restart can tell which pod a domain belongs to without
// trusting the name alone.
type Metadata struct {
	XMLName        xml.Name `xml:"urn:podvisor:domain:1 instance"`
	PodUID         string   `xml:"pod-uid,attr"`
	PodName        string   `xml:"pod-name,attr,omitempty"`
	PodNamespace   string   `xml:"pod-namespace,attr,omitempty"`
	ContainerName  string   `xml:"container-name,attr,omitempty"`
	Attempt        uint32   `xml:"attempt,attr"`
	RootVolumeSize int64    `xml:"root-volume-size,attr,omitempty"`
}

func metadataFor(in Input) (*libvirtxml.DomainMetadata, error) {
	m := Metadata{
		PodUID:         in.PodUID,
		PodName:        in.PodName,
		PodNamespace:   in.PodNamespace,
		ContainerName:  in.ContainerName,
		Attempt:        in.Attempt,
		RootVolumeSize: in.VM.RootVolumeSize,
	}
	b, err := xml.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("marshalling domain metadata: %w", err)
	}
	return &libvirtxml.DomainMetadata{XML: string(b)}, nil
}

// ErrNoMetadata says a domain carries no podvisor metadata (it is not ours).
var ErrNoMetadata = errors.New("domain has no podvisor metadata")

// ReadMetadata returns podvisor's metadata of a domain, as libvirt gives it
// back (libvirt may re-prefix the namespace; the URI is what counts).
func ReadMetadata(d *libvirtxml.Domain) (*Metadata, error) {
	if d == nil || d.Metadata == nil {
		return nil, ErrNoMetadata
	}
	var wrapper struct {
		Instances []Metadata `xml:"urn:podvisor:domain:1 instance"`
	}
	if err := xml.Unmarshal([]byte("<metadata>"+d.Metadata.XML+"</metadata>"), &wrapper); err != nil {
		return nil, fmt.Errorf("reading metadata of domain %s: %w", d.Name, err)
	}
	if len(wrapper.Instances) == 0 {
		return nil, ErrNoMetadata
	}
	return &wrapper.Instances[0], nil
}

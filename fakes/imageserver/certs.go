package imageserver

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"time"
)

// PEMPair is a certificate and its key in PEM.
type PEMPair struct {
	Cert, Key []byte
}

// TLSCertificate parses the pair.
func (p PEMPair) TLSCertificate() (tls.Certificate, error) {
	return tls.X509KeyPair(p.Cert, p.Key)
}

// Certs is a throw-away PKI for tests: a CA, a server certificate for
// 127.0.0.1 and the DNS name "images.test", and a client certificate.
type Certs struct {
	CA     PEMPair
	Server PEMPair
	Client PEMPair
	Pool   *x509.CertPool // holds the CA
}

// GenerateCerts makes a fresh CA and certificates valid for one day.
func GenerateCerts() (*Certs, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating CA key: %w", err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "podvisor test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("creating CA certificate: %w", err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	c := &Certs{CA: PEMPair{Cert: pemBlock("CERTIFICATE", caDER)}, Pool: x509.NewCertPool()}
	c.Pool.AddCert(caCert)
	if c.CA.Key, err = keyPEM(caKey); err != nil {
		return nil, err
	}
	leaf := func(serial int64, cn string, usage x509.ExtKeyUsage, server bool) (PEMPair, error) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return PEMPair{}, err
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: cn},
			NotBefore:    now.Add(-time.Hour),
			NotAfter:     now.Add(24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		}
		if server {
			tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
			tmpl.DNSNames = []string{"images.test"}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			return PEMPair{}, fmt.Errorf("creating %s certificate: %w", cn, err)
		}
		k, err := keyPEM(key)
		if err != nil {
			return PEMPair{}, err
		}
		return PEMPair{Cert: pemBlock("CERTIFICATE", der), Key: k}, nil
	}
	if c.Server, err = leaf(2, "images.test", x509.ExtKeyUsageServerAuth, true); err != nil {
		return nil, err
	}
	if c.Client, err = leaf(3, "podvisor test client", x509.ExtKeyUsageClientAuth, false); err != nil {
		return nil, err
	}
	return c, nil
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func keyPEM(k *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("encoding key: %w", err)
	}
	return pemBlock("PRIVATE KEY", der), nil
}

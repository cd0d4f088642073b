package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TLSFiles are PEM files of a private CA made for one test: a server
// certificate for 127.0.0.1, localhost and any further names asked for
// (also good as a client certificate, as Redis replicas and cluster peers
// present it), and a client certificate for mTLS.
type TLSFiles struct {
	Dir                    string
	CA                     string
	ServerCert, ServerKey  string
	ClientCert, ClientKey  string
	OtherCA                string // a CA that signed none of these (a wrong trust anchor)
	caPool                 *x509.CertPool
	clientPair, serverPair tls.Certificate
}

// NewTLSFiles writes a CA, server and client certificates to a temporary
// directory; names (host names or IP addresses) are added to the server
// certificate's.
func NewTLSFiles(t testing.TB, names ...string) *TLSFiles {
	t.Helper()
	dir := t.TempDir()
	f := &TLSFiles{Dir: dir}
	write := func(name string, blocks ...*pem.Block) string {
		p := filepath.Join(dir, name)
		var out []byte
		for _, b := range blocks {
			out = append(out, pem.EncodeToMemory(b)...)
		}
		if err := os.WriteFile(p, out, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caKey, caCert, caDER := newCA(t, "gatehouse test CA")
	f.CA = write("ca.pem", &pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	_, _, otherDER := newCA(t, "unrelated CA")
	f.OtherCA = write("other-ca.pem", &pem.Block{Type: "CERTIFICATE", Bytes: otherDER})
	f.caPool = x509.NewCertPool()
	f.caPool.AddCert(caCert)

	issue := func(name string, serial int64, usage []x509.ExtKeyUsage) (string, string, tls.Certificate) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: name},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  usage,
			DNSNames:     []string{"localhost"},
			IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		}
		for _, n := range names {
			if ip := net.ParseIP(n); ip != nil {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			} else {
				tmpl.DNSNames = append(tmpl.DNSNames, n)
			}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		certPath := write(name+".pem", &pem.Block{Type: "CERTIFICATE", Bytes: der})
		keyPath := write(name+"-key.pem", &pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
		pair, err := tls.LoadX509KeyPair(certPath, keyPath)
		if err != nil {
			t.Fatal(err)
		}
		return certPath, keyPath, pair
	}
	f.ServerCert, f.ServerKey, f.serverPair = issue("server", 2, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth})
	f.ClientCert, f.ClientKey, f.clientPair = issue("client", 3, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth})
	return f
}

func newCA(t testing.TB, name string) (*ecdsa.PrivateKey, *x509.Certificate, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return key, cert, der
}

// ServerConfig serves the server certificate.
func (f *TLSFiles) ServerConfig() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{f.serverPair}, MinVersion: tls.VersionTLS12}
}

// ClientConfig is a client TLS configuration trusting the CA, with the
// client certificate when mTLS is true.
func (f *TLSFiles) ClientConfig(mTLS bool) *tls.Config {
	c := &tls.Config{RootCAs: f.caPool, MinVersion: tls.VersionTLS12}
	if mTLS {
		c.Certificates = []tls.Certificate{f.clientPair}
	}
	return c
}

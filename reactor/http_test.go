package reactor_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"
)

// selfSigned makes a certificate for 127.0.0.1 and the pool that trusts it.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "oneshot test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

func sum(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// hashEcho answers a POST with a body of the size ?n= asks for, random,
// and reports the hashes of what it received and of what it sends.
func hashEcho(w http.ResponseWriter, req *http.Request) {
	got, err := io.ReadAll(req.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	n, _ := strconv.Atoi(req.URL.Query().Get("n"))
	out := make([]byte, n)
	rand.Read(out)
	w.Header().Set("X-Got-Sha256", sum(got))
	w.Header().Set("X-Sent-Sha256", sum(out))
	w.Write(out)
}

// TestHTTPSOnReactor serves HTTPS with net/http and crypto/tls on
// NetListen and calls it with an http.Client that dials with DialContext,
// over HTTP/1.1 and HTTP/2, several requests at once, bodies of several
// hundred KB each way, checked byte for byte by hash.
func TestHTTPSOnReactor(t *testing.T) {
	for _, b := range backends {
		for _, proto := range []string{"http1", "h2"} {
			t.Run(name(b)+"/"+proto, func(t *testing.T) {
				r := newReactor(t, b, 2)
				cert, pool := selfSigned(t)
				ln, err := r.NetListen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				srv := &http.Server{
					Handler:     http.HandlerFunc(hashEcho),
					TLSConfig:   &tls.Config{Certificates: []tls.Certificate{cert}},
					ReadTimeout: 30 * time.Second,
				}
				served := make(chan error, 1)
				go func() { served <- srv.ServeTLS(ln, "", "") }()
				tr := &http.Transport{
					DialContext:       r.DialContext,
					TLSClientConfig:   &tls.Config{RootCAs: pool},
					ForceAttemptHTTP2: proto == "h2",
				}
				if proto == "http1" {
					tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
				}
				client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
				url := "https://" + ln.Addr().String() + "/"

				var wg sync.WaitGroup
				errs := make(chan error, 8)
				for i := 0; i < 4; i++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						errs <- roundTrip(client, url, 300<<10+i*1001, 500<<10+i*777, proto)
					}()
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					if err != nil {
						t.Error(err)
					}
				}

				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if err := srv.Shutdown(ctx); err != nil {
					t.Fatalf("Shutdown: %v", err)
				}
				if err := <-served; !errors.Is(err, http.ErrServerClosed) {
					t.Fatalf("ServeTLS: %v", err)
				}
				tr.CloseIdleConnections()
				if s := r.Stats(); s.Armed == 0 {
					t.Fatalf("no Poll went through the reactor: %+v", s)
				}
			})
		}
	}
}

// roundTrip POSTs up random bytes and asks for down back; both ends'
// hashes must match and the protocol must be the one asked for.
func roundTrip(client *http.Client, url string, up, down int, proto string) error {
	body := make([]byte, up)
	rand.Read(body)
	resp, err := client.Post(url+"?n="+strconv.Itoa(down), "application/octet-stream", bytes.NewReader(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("reading the response: %w", err)
	}
	switch {
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("status %s: %s", resp.Status, got)
	case resp.TLS == nil:
		return errors.New("response not over TLS")
	case (proto == "h2") != (resp.ProtoMajor == 2):
		return fmt.Errorf("protocol %s, want %s", resp.Proto, proto)
	case len(got) != down:
		return fmt.Errorf("response %d bytes, want %d", len(got), down)
	case resp.Header.Get("X-Got-Sha256") != sum(body):
		return fmt.Errorf("server received a different request body (%d bytes sent)", up)
	case resp.Header.Get("X-Sent-Sha256") != sum(got):
		return fmt.Errorf("client received a different response body (%d bytes)", down)
	}
	return nil
}

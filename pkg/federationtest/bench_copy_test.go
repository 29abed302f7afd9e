package federationtest

// The baselines of BenchmarkBulkTransfer: the same bytes copied by bare quic-go (one stream) and by TLS 1.3
// over TCP, between two processes on loopback. The serving side is this test binary started again as
// TestBenchCopyPeer, so the baselines need no program of their own.

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
)

// bulkSize is what every bulk benchmark moves per operation.
const bulkSize = 256 << 20

// copyBuf is the read and write size of the baselines: the size of one sealed chunk of the product.
const copyBuf = 64 << 10

// Environment of the serving process of a baseline.
const (
	envPeerRole     = "MYDATA_BENCH_PEER"     // quic or tls, with -work: the same-work baselines; hop-quic, hop-tls: the hop's middle
	envPeerUpstream = "MYDATA_BENCH_UPSTREAM" // the hop's middle: the same-work server's address
	envPeerFile     = "MYDATA_BENCH_FILE"     // what to serve
	benchALPN       = "mydata-bench"
)

// writeBulkFile writes size deterministic pseudo-random bytes (incompressible, the same in every run) to
// path.
func writeBulkFile(tb testing.TB, path string, size int64) {
	tb.Helper()
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	rng := mrand.NewChaCha8([32]byte{'m', 'y', 'd', 'a', 't', 'a'})
	buf := make([]byte, 1<<20)
	for left := size; left > 0; left -= int64(len(buf)) {
		rng.Read(buf)
		if _, err := f.Write(buf[:min(left, int64(len(buf)))]); err != nil {
			tb.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}
}

// bulkFile makes the 256 MiB dataset in a new directory, named as the file backend finds it for subject.
func bulkFile(tb testing.TB, subject string) (dir, path string) {
	dir = tb.TempDir()
	path = filepath.Join(dir, subject+".json")
	writeBulkFile(tb, path, bulkSize)
	return dir, path
}

// TestBenchCopyPeer is not a test: it is the serving process of the copy baselines, which the benchmarks
// start from this same test binary with MYDATA_BENCH_PEER set. It prints its address, serves the file to
// every request until its stdin closes, then exits.
func TestBenchCopyPeer(t *testing.T) {
	role := os.Getenv(envPeerRole)
	if role == "" {
		t.Skip("the serving process of the copy baselines; only benchmarks start it")
	}
	if err := servePeer(role, os.Getenv(envPeerFile)); err != nil {
		fmt.Fprintln(os.Stderr, "bench peer:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func servePeer(role, path string) error {
	if transport, ok := strings.CutPrefix(role, "hop-"); ok {
		return serveHop(transport, os.Getenv(envPeerUpstream))
	}
	serveOne := serveCopy
	if r, ok := strings.CutSuffix(role, "-work"); ok {
		role, serveOne = r, serveWork
	}
	cert, err := benchCert()
	if err != nil {
		return err
	}
	conf := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13, NextProtos: []string{benchALPN}}
	var serve func() error
	switch role {
	case "quic":
		ln, err := quic.ListenAddr("127.0.0.1:0", conf, &quic.Config{MaxIdleTimeout: time.Minute})
		if err != nil {
			return err
		}
		fmt.Printf("ADDR %s\n", ln.Addr())
		serve = func() error {
			for {
				conn, err := ln.Accept(context.Background())
				if err != nil {
					return err
				}
				go func() {
					for {
						st, err := conn.AcceptStream(context.Background())
						if err != nil {
							return
						}
						go func() {
							defer st.Close()
							defer st.CancelRead(0) // done reading: lets the client open another stream in its place
							if err := serveOne(st, st, path); err != nil {
								st.CancelWrite(1)
							}
						}()
					}
				}()
			}
		}
	case "tls":
		ln, err := tls.Listen("tcp", "127.0.0.1:0", conf)
		if err != nil {
			return err
		}
		fmt.Printf("ADDR %s\n", ln.Addr())
		serve = func() error {
			for {
				c, err := ln.Accept()
				if err != nil {
					return err
				}
				go func() {
					defer c.Close()
					_ = serveOne(c, c, path)
				}()
			}
		}
	default:
		return fmt.Errorf("unknown role %q", role)
	}
	errc := make(chan error, 1)
	go func() { errc <- serve() }()
	go func() {
		io.Copy(io.Discard, os.Stdin) // the benchmark is done (or gone) when our stdin closes
		errc <- nil
	}()
	return <-errc
}

// openOnRequest reads a copy's one-byte request from r and opens the file to serve.
func openOnRequest(r io.Reader, path string) (*os.File, error) {
	var req [1]byte
	if _, err := io.ReadFull(r, req[:]); err != nil {
		return nil, err
	}
	return os.Open(path)
}

// serveCopy reads the one-byte request and writes the file in copyBuf writes, as a DP writes sealed chunks.
func serveCopy(r io.Reader, w io.Writer, path string) error {
	f, err := openOnRequest(r, path)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, copyBuf)
	for {
		n, err := io.ReadFull(f, buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// discardAll reads r to its end in copyBuf reads and counts the bytes.
func discardAll(r io.Reader, buf []byte) (int64, error) {
	var n int64
	for {
		k, err := r.Read(buf)
		n += int64(k)
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

func benchCert() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bench"}, DNSNames: []string{"localhost"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// startCopyPeer starts this test binary as the serving process of a baseline and returns its address and
// process id.
func startCopyPeer(b *testing.B, role, path string, env ...string) (string, int) {
	b.Helper()
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^TestBenchCopyPeer$", "-test.count=1")
	cmd.Env = append(append(os.Environ(), envPeerRole+"="+role, envPeerFile+"="+path), env...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "ADDR ")
	if err != nil || !ok {
		b.Fatalf("bench peer did not say its address: %q %v", line, err)
	}
	go io.Copy(io.Discard, stdout)
	return addr, cmd.Process.Pid
}

// benchClientTLS trusts the baseline's throwaway certificate: the baselines measure transport, not trust.
func benchClientTLS() *tls.Config {
	return &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13, NextProtos: []string{benchALPN}}
}

// benchCopy runs a copy baseline: the serving process of role (quic or tls; with -work, the same-work
// one) serves the bulk file, and each operation fetches it once and reads it to its end with read
// (discardAll for the bare copies, receiveWork for the same-work ones), over a new stream of one QUIC
// connection or over a new TLS connection. It reports the CPU of both ends.
func benchCopy(b *testing.B, role string, read func(r io.Reader, buf []byte) (int64, error)) {
	_, path := bulkFile(b, "bare")
	addr, pid := startCopyPeer(b, role, path)
	transport, work := strings.CutSuffix(role, "-work")
	open := copyOpener(b, transport, addr)
	buf := make([]byte, copyBuf)
	if work {
		buf = make([]byte, copyBuf+64) // a sealed frame
	}
	var cpu cpuMeter
	cpu.add("server", pid)
	cpu.add("client", 0)
	cpu.begin(b)
	b.SetBytes(bulkSize)
	for b.Loop() {
		n, err := fetchCopy(open, read, buf)
		if err != nil || n != bulkSize {
			b.Fatalf("%s copy: %d bytes, %v", role, n, err)
		}
	}
	cpu.report(b, b.N)
}

// copyOpener connects to the serving process of a baseline at addr and returns how one copy starts: a new
// stream of one QUIC connection kept for all, or a new TLS connection. open sends the request (one byte)
// and returns the answer to read, and how to close it once read.
func copyOpener(b *testing.B, transport, addr string) (open func() (io.Reader, func(), error)) {
	b.Helper()
	open, closeConn, err := dialCopy(transport, addr)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(closeConn)
	return open
}

// dialCopy is copyOpener outside a benchmark (the hop baselines' middle process uses it too); closeConn
// closes what it keeps open.
func dialCopy(transport, addr string) (open func() (io.Reader, func(), error), closeConn func(), err error) {
	switch transport {
	case "quic":
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conn, err := quic.DialAddr(ctx, addr, benchClientTLS(), &quic.Config{MaxIdleTimeout: time.Minute})
		if err != nil {
			return nil, nil, err
		}
		return func() (io.Reader, func(), error) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			st, err := conn.OpenStreamSync(ctx)
			if err != nil {
				return nil, nil, err
			}
			if _, err := st.Write([]byte{1}); err != nil {
				st.CancelRead(0)
				return nil, nil, err
			}
			st.Close()
			return st, func() { st.CancelRead(0) }, nil
		}, func() { conn.CloseWithError(0, "") }, nil
	case "tls":
		return func() (io.Reader, func(), error) {
			c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, benchClientTLS())
			if err != nil {
				return nil, nil, err
			}
			if _, err := c.Write([]byte{1}); err != nil {
				c.Close()
				return nil, nil, err
			}
			return c, func() { c.Close() }, nil
		}, func() {}, nil
	}
	return nil, nil, fmt.Errorf("unknown transport %q", transport)
}

// fetchCopy fetches the file once and reads it with read.
func fetchCopy(open func() (io.Reader, func(), error), read func(io.Reader, []byte) (int64, error), buf []byte) (int64, error) {
	r, done, err := open()
	if err != nil {
		return 0, err
	}
	defer done()
	return read(r, buf)
}

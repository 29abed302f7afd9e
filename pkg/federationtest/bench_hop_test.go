package federationtest

// The hop baselines: the same-work copies of bench_work_test.go with the hop the product's streaming API
// makes, and nothing else. BenchmarkBulkTransfer's bytes go DP connector -> SP connector -> application,
// the last leg over loopback HTTP/1.1 (chunked, a trailer with the digest). Here a middle process (this
// test binary again) receives the same-work copy exactly as receiveWork does and writes the plaintext to
// the benchmark's HTTP request the way the SP connector writes a stream (1 MiB per response Write, the
// digest in a trailer); the benchmark reads the body in 64 KiB reads, as bulkTransfer does. So the hop
// baseline is the least any implementation of the product's API can cost on this machine: the product's
// ratio to it is what is left of its own overhead.

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// hopBatch is what the middle process holds before a response Write, as the SP connector's streamBatch.
const hopBatch = 1 << 20

// hopTrailer carries the digest, as X-MyData-SHA256 does in the product.
const hopTrailer = "X-Bench-Sha256"

// serveHop is the middle process of a hop baseline: it fetches from the same-work server at upstream over
// transport (quic or tls) per HTTP request and streams the plaintext as the response.
func serveHop(transport, upstream string) error {
	open, closeConn, err := dialCopy(transport, upstream)
	if err != nil {
		return err
	}
	defer closeConn()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Printf("ADDR %s\n", ln.Addr())
	buf := make([]byte, copyBuf+64)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		up, done, err := open()
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer done()
		w.Header().Set("Trailer", hopTrailer)
		bw := bufio.NewWriterSize(w, hopBatch)
		_, sum, err := receiveWorkTo(up, buf, bw)
		if err == nil {
			err = bw.Flush()
		}
		if err != nil {
			panic(http.ErrAbortHandler) // cut the response: a short body must not look whole
		}
		w.Header().Set(hopTrailer, hex.EncodeToString(sum))
	}), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	io.Copy(io.Discard, os.Stdin) // the benchmark is done (or gone) when our stdin closes
	return srv.Close()
}

// benchHop runs a hop baseline over transport: the same-work server, the middle process fetching from it,
// and per operation the benchmark's GET of the middle, read to its end in copyBuf reads. It reports the
// CPU of all three, as BulkTransfer does for the DP, the SP and the application.
func benchHop(b *testing.B, transport string) {
	_, path := bulkFile(b, "bare")
	upstream, serverPID := startCopyPeer(b, transport+"-work", path)
	addr, hopPID := startCopyPeer(b, "hop-"+transport, "", envPeerUpstream+"="+upstream)
	client := &http.Client{Timeout: 5 * time.Minute}
	defer client.CloseIdleConnections()
	buf := make([]byte, copyBuf)
	var cpu cpuMeter
	cpu.add("server", serverPID)
	cpu.add("client", hopPID)
	cpu.add("app", 0)
	cpu.begin(b)
	b.SetBytes(bulkSize)
	for b.Loop() {
		n, sum, err := fetchHop(client, "http://"+addr+"/", buf)
		if err != nil || n != bulkSize || len(sum) != 64 {
			b.Fatalf("hop over %s: %d bytes, digest %q, %v", transport, n, sum, err)
		}
	}
	cpu.report(b, b.N)
}

// fetchHop reads one copy through the middle process and returns its size and the trailer's digest.
func fetchHop(client *http.Client, url string, buf []byte) (int64, string, error) {
	resp, err := client.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(resp.Body)
		return 0, "", fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(msg)))
	}
	n, err := discardAll(resp.Body, buf)
	return n, resp.Trailer.Get(hopTrailer), err
}

// BenchmarkBareQUICSameWorkHop is BenchmarkBareQUICSameWork with the hop to an application the product's
// streaming API makes: the least BenchmarkBulkTransfer can cost here.
func BenchmarkBareQUICSameWorkHop(b *testing.B) { benchHop(b, "quic") }

// BenchmarkTLSTCPSameWorkHop is BenchmarkTLSTCPSameWork with the same hop: the least BenchmarkBulkTransferTCP
// can cost here.
func BenchmarkTLSTCPSameWorkHop(b *testing.B) { benchHop(b, "tls") }

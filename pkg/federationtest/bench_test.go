package federationtest

// Benchmarks of the product against its targets (docs/benchmarks.md). Each starts real processes, so they
// run only with -bench; `make bench` runs them with the iteration counts the targets need and prints the
// ratios.
//
//	BenchmarkBulkTransfer    256 MiB DP→SP through the connectors and the SP's streaming local API (MB/s)
//	BenchmarkBareQUIC        the same bytes over one bare quic-go stream between two processes (MB/s)
//	BenchmarkTLSTCP          the same bytes over TLS 1.3 on TCP between two processes (MB/s)
//	BenchmarkSmallExchanges  whole online exchanges of 4 KiB, 32 at a time (exchanges/s, p50-ms, p99-ms)
//	BenchmarkIdleConnector   resident memory of enrolled, serving, idle connectors (RSS-MiB)

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	// smallSize is the dataset of one small exchange.
	smallSize = 4 << 10
	// smallClients is how many citizens and SP requests are under way at once.
	smallClients = 32
)

func fileSHA256(tb testing.TB, path string) string {
	tb.Helper()
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		tb.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// BenchmarkBulkTransfer moves a 256 MiB dataset from a DP connector's file backend to the SP's
// application: the SP application posts the code to its connector's streaming endpoint, which redeems it at
// the hub and fetches over QUIC (ticket check, backend read, HPKE sealing, signed trailer, audit on both
// sides) while streaming to the application. The citizen's consent is given before each timed operation.
func BenchmarkBulkTransfer(b *testing.B) {
	subject := benchSubjects(b, 1)[0]
	dir, path := bulkFile(b, subject)
	bulkTransfer(b, startBenchFed(b, dir), subject, fileSHA256(b, path))
}

// BenchmarkBulkTransferTCP is BenchmarkBulkTransfer over the TCP fallback (QUIC off at the SP): TLS 1.3 on
// TCP, one connection per transfer. Its same-work baseline is BenchmarkTLSTCPSameWork.
func BenchmarkBulkTransferTCP(b *testing.B) {
	subject := benchSubjects(b, 1)[0]
	dir, path := bulkFile(b, subject)
	f := startBenchFedTCP(b, dir)
	bulkTransfer(b, f, subject, fileSHA256(b, path))
	if m := f.sp.Metrics(); !strings.Contains(m, `mydata_connector_sp_datasets_total{status="delivered",transport="tcp"}`) || strings.Contains(m, `transport="quic"`) {
		b.Fatalf("the transfers did not all go over TCP:\n%s", grepLines(m, "sp_datasets_total"))
	}
}

// bulkTransfer is the loop of BenchmarkBulkTransfer and BenchmarkBulkTransferTCP: per operation the
// citizen approves (untimed), then the SP application streams subject's dataset, which must come whole
// with digest want (hex SHA-256).
func bulkTransfer(b *testing.B, f *benchFed, subject, want string) {
	client := &http.Client{Timeout: 5 * time.Minute}
	buf := make([]byte, copyBuf)
	var cpu cpuMeter
	cpu.add("dp", f.dp.proc.cmd.Process.Pid)
	cpu.add("sp", f.sp.proc.cmd.Process.Pid)
	cpu.add("hub", f.h.proc.cmd.Process.Pid)
	cpu.add("app", 0)
	cpu.begin(b)
	b.SetBytes(bulkSize)
	for b.Loop() {
		b.StopTimer()
		code, p := f.approve(b, subject)
		b.StartTimer()
		n, sum, err := f.streamExchange(client, code, p, buf)
		if err != nil {
			b.Fatal(err)
		}
		if n != bulkSize || sum != want {
			b.Fatalf("received %d bytes with digest %s, want %d bytes with %s", n, sum, bulkSize, want)
		}
	}
	cpu.report(b, b.N)
}

// BenchmarkBareQUIC is the transport's ceiling for BenchmarkBulkTransfer: the same file read and sent in
// 64 KiB writes on one stream of a bare quic-go connection (default configuration, TLS 1.3) to another
// process, which reads and discards it.
func BenchmarkBareQUIC(b *testing.B) { benchCopy(b, "quic", discardAll) }

// BenchmarkTLSTCP is the same copy as BenchmarkBareQUIC over TLS 1.3 on TCP, one connection per copy.
func BenchmarkTLSTCP(b *testing.B) { benchCopy(b, "tls", discardAll) }

// BenchmarkSmallExchanges runs whole online exchanges through the real endpoints, smallClients at a time:
// the browser's authorize, login, consent page and approval at the hub's portal, then the SP application's
// POST of the code to its connector, which redeems it and fetches a 4 KiB dataset from the DP connector.
// One operation is one exchange. The clock stops when the hub has recorded both receipts (DP's and SP's)
// of every exchange, so exchanges/s counts finished work; p50-ms and p99-ms are the latencies the browser
// and the SP application see for one whole exchange; receipt-lag-ms is how long the last receipts took to
// reach the hub after the last exchange ended.
func BenchmarkSmallExchanges(b *testing.B) {
	subjects := benchSubjects(b, 1000)
	f := startBenchFed(b, smallRecords(b, subjects, smallSize))
	smallExchanges(b, f, subjects)
}

// BenchmarkSmallExchangesCluster is BenchmarkSmallExchanges against a three-node hub cluster: the
// browsers' portal visits are spread over the three nodes (two of three land on a follower, which forwards
// the consent to the leader), the connectors use the first node they list. hub-cpu-ms/op is the three
// nodes' CPU together; hub1, hub2 and hub3 each node's.
func BenchmarkSmallExchangesCluster(b *testing.B) {
	subjects := benchSubjects(b, 1000)
	hubs := StartCluster(b, 3, HubOptions{})
	for _, h := range hubs {
		quietLogs(b, h.ConfigPath)
	}
	f := setupBenchFed(b, hubs[0], smallRecords(b, subjects, smallSize))
	smallExchanges(b, f, subjects)
}

func smallExchanges(b *testing.B, f *benchFed, subjects []string) {
	fl := newBenchFlow(f, smallSize)
	defer fl.transport.CloseIdleConnections()

	// Warm up: connections, the QUIC connection between the connectors, SQLite's caches.
	var wg sync.WaitGroup
	errs := make(chan error, smallClients)
	for i := range smallClients {
		wg.Go(func() {
			if err := fl.run(subjects[i]); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal("warm-up: ", err)
	}
	if err := waitReceipts(f.h, 2*smallClients, 30*time.Second); err != nil {
		b.Fatal("warm-up: ", err)
	}
	before, err := receiptsTotal(f.h)
	if err != nil {
		b.Fatal(err)
	}

	var cpu cpuMeter
	var hubPids []int
	for _, h := range f.h.Cluster {
		hubPids = append(hubPids, h.Pid())
	}
	cpu.add("hub", hubPids...)
	if len(hubPids) > 1 {
		for i, pid := range hubPids {
			cpu.add(fmt.Sprintf("hub%d", i+1), pid)
		}
	}
	cpu.add("dp", f.dp.proc.cmd.Process.Pid)
	cpu.add("sp", f.sp.proc.cmd.Process.Pid)
	cpu.add("app", 0)
	cpu.begin(b)
	jobs := make(chan int)
	var (
		mu       sync.Mutex
		lat      []time.Duration
		firstErr error
	)
	for range smallClients {
		wg.Go(func() {
			for i := range jobs {
				t0 := time.Now()
				err := fl.run(subjects[i%len(subjects)])
				d := time.Since(t0)
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				lat = append(lat, d)
				mu.Unlock()
			}
		})
	}
	start := time.Now()
	n := 0
	for b.Loop() {
		jobs <- n
		n++
	}
	close(jobs)
	wg.Wait()
	if firstErr != nil {
		b.Fatal(firstErr)
	}
	clientsDone := time.Now()
	if err := waitReceipts(f.h, before+2*n, time.Minute); err != nil {
		b.Fatal(err)
	}
	elapsed := time.Since(start)
	b.ReportMetric(millis(time.Since(clientsDone)), "receipt-lag-ms")
	slices.Sort(lat)
	b.ReportMetric(float64(elapsed.Nanoseconds())/float64(n), "ns/op")
	b.ReportMetric(float64(n)/elapsed.Seconds(), "exchanges/s")
	b.ReportMetric(millis(percentile(lat, 0.50)), "p50-ms")
	b.ReportMetric(millis(percentile(lat, 0.99)), "p99-ms")
	cpu.report(b, n)
}

// waitReceipts waits until the hub has recorded want receipts in all.
func waitReceipts(h *Hub, want int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		got, err := receiptsTotal(h)
		if err == nil && got >= want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the hub has %d receipts after %s, want %d (%v)", got, timeout, want, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(float64(len(sorted))*p))]
}

func millis(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// BenchmarkIdleConnector reads the resident memory of the DP and SP connectors after they have served one
// exchange and then idled for 10 s, enrolled, serving QUIC, their local API and telemetry. RSS-MiB is the
// larger of the two; one operation is one 10 s idle period.
func BenchmarkIdleConnector(b *testing.B) {
	subjects := benchSubjects(b, 1)
	f := startBenchFed(b, smallRecords(b, subjects, smallSize))
	fl := newBenchFlow(f, smallSize)
	if err := fl.run(subjects[0]); err != nil {
		b.Fatal(err)
	}
	fl.transport.CloseIdleConnections()
	var dp, sp, hub float64
	for b.Loop() {
		time.Sleep(10 * time.Second)
		var err error
		if dp, err = rssMiB(f.dp.proc.cmd.Process.Pid); err != nil {
			b.Fatal(err)
		}
		if sp, err = rssMiB(f.sp.proc.cmd.Process.Pid); err != nil {
			b.Fatal(err)
		}
		if hub, err = rssMiB(f.h.proc.cmd.Process.Pid); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(max(dp, sp), "RSS-MiB")
	b.ReportMetric(dp, "dp-RSS-MiB")
	b.ReportMetric(sp, "sp-RSS-MiB")
	b.ReportMetric(hub, "hub-RSS-MiB")
}

package federationtest

// Benchmarks of the SP's data plane under a large result and a dead peer.
//
//	BenchmarkLargeExchangeRSS  SP connector's peak resident memory over a 1 GiB POST /v1/exchanges (sp-peak-RSS-MiB)
//	BenchmarkDeadPeer          time from SIGKILL of the DP mid-transfer to the SP reporting failed (kill-to-failed-ms)

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// largeSize is the dataset of BenchmarkLargeExchangeRSS: the largest exchange.max_bytes allows by default.
const largeSize = 1 << 30

// peakRSSMiB reads a process's peak resident set (VmHWM) from /proc.
func peakRSSMiB(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			if err != nil {
				return 0, err
			}
			return kb / 1024, nil
		}
	}
	return 0, errors.New("no VmHWM line")
}

// BenchmarkLargeExchangeRSS runs POST /v1/exchanges of a 1 GiB dataset and the GET of its content URL,
// as an SP application that takes a large result does, and reports the SP connector's peak resident
// memory (VmHWM: the most it ever held, start-up included), with the throughput and CPU per operation.
// The result waits in a sealed spill file, so memory stays flat.
func BenchmarkLargeExchangeRSS(b *testing.B) {
	subject := benchSubjects(b, 1)[0]
	dir := b.TempDir()
	path := filepath.Join(dir, subject+".json")
	writeBulkFile(b, path, largeSize)
	want := fileSHA256(b, path)
	f := startBenchFed(b, dir)
	var cpu cpuMeter
	cpu.add("dp", f.dp.proc.cmd.Process.Pid)
	cpu.add("sp", f.sp.proc.cmd.Process.Pid)
	cpu.add("app", 0)
	cpu.begin(b)
	b.SetBytes(largeSize)
	for b.Loop() {
		b.StopTimer()
		code, p := f.approve(b, subject)
		b.StartTimer()
		n, sum, err := largeExchangeCode(b, f, code, p, nil)
		if err != nil {
			b.Fatal(err)
		}
		if n != largeSize || sum != want {
			b.Fatalf("received %d bytes with digest %s, want %d bytes with %s", n, sum, largeSize, want)
		}
	}
	cpu.report(b, b.N)
	sp, err := peakRSSMiB(f.sp.proc.Pid())
	if err != nil {
		b.Fatal(err)
	}
	dp, err := peakRSSMiB(f.dp.proc.Pid())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(sp, "sp-peak-RSS-MiB")
	b.ReportMetric(dp, "dp-peak-RSS-MiB")
}

// BenchmarkDeadPeer kills the DP connector (SIGKILL) 4 MiB into a 256 MiB transfer streamed to the SP's
// application, and measures the time until the SP reports the dataset failed (kill-to-failed-ms, the
// median of the operations; kill-to-failed-max-ms the slowest) and until the application's body read
// fails (kill-to-cut-ms). Each operation starts the DP again first, untimed.
func BenchmarkDeadPeer(b *testing.B) {
	subject := benchSubjects(b, 1)[0]
	dir, _ := bulkFile(b, subject)
	f := startBenchFed(b, dir)
	var failed, cut []time.Duration
	for b.Loop() {
		b.StopTimer()
		if f.dp.proc.Exited() {
			f.dp.Start()
		}
		b.StartTimer()
		c, fl, err := killDPMidStream(b, f, subject)
		if err != nil {
			b.Fatal(err)
		}
		cut, failed = append(cut, c), append(failed, fl)
	}
	slices.Sort(cut)
	slices.Sort(failed)
	b.ReportMetric(millis(percentile(failed, 0.5)), "kill-to-failed-ms")
	b.ReportMetric(millis(failed[len(failed)-1]), "kill-to-failed-max-ms")
	b.ReportMetric(millis(percentile(cut, 0.5)), "kill-to-cut-ms")
}

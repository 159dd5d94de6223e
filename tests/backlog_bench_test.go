package tests

import (
	"fmt"
	"testing"
	"time"

	"relayq/transport/smtptest"
)

// BenchmarkStartupBacklog: relayq restarted after a crash on a queue of
// 10,000 and of 100,000 messages → smtptest relay.
// It reports the time from exec to "relayq ready" (ms/ready), the resident
// set once 200 messages were delivered (MiB-rss-busy), the peak resident
// set at ready and then (MiB-hwm, MiB-hwm-busy), and how much of it was heap (MiB-anon) and mapped queue
// file (MiB-file). Run it with
//
//	go test -run '^$' -bench StartupBacklog -benchtime 3x ./tests/
func BenchmarkStartupBacklog(b *testing.B) {
	for _, n := range []int{10000, 100000} {
		b.Run(fmt.Sprintf("queued=%d", n), func(b *testing.B) {
			relay := smtptest.NewServer(b, smtptest.Options{})
			d := newDaemon(b, relay)
			buildBacklog(b, d, n)
			var sum startupFigures
			runs := 0
			for b.Loop() {
				f := measureStartup(b, d, relay, 200)
				b.Logf("%v", f)
				sum.ready += f.ready
				sum.hwm = max(sum.hwm, f.hwm)
				sum.hwmBusy = max(sum.hwmBusy, f.hwmBusy)
				sum.rssBusy = max(sum.rssBusy, f.rssBusy)
				sum.anonPeak = max(sum.anonPeak, f.anonPeak)
				sum.filePeak = max(sum.filePeak, f.filePeak)
				runs++
			}
			const mib = 1 << 20
			b.ReportMetric(float64(sum.ready/time.Duration(runs))/float64(time.Millisecond), "ms/ready")
			b.ReportMetric(float64(sum.hwm)/mib, "MiB-hwm")
			b.ReportMetric(float64(sum.hwmBusy)/mib, "MiB-hwm-busy")
			b.ReportMetric(float64(sum.rssBusy)/mib, "MiB-rss-busy")
			b.ReportMetric(float64(sum.anonPeak)/mib, "MiB-anon")
			b.ReportMetric(float64(sum.filePeak)/mib, "MiB-file")
		})
	}
}

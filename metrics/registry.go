package metrics

import (
	"log"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"relayq/delivery"
	"relayq/queue"
	"relayq/spool"
)

// Registry is the daemon's private registry of metrics.
type Registry struct {
	reg *prometheus.Registry
}

// New returns a registry with the Go runtime and process collectors,
// relayq_build_info{version} and the counters of intake and delivery,
// read when scraped. A nil intake or delivery is left out.
func New(version string, intake *spool.Metrics, dl *delivery.Metrics) *Registry {
	r := &Registry{reg: prometheus.NewRegistry()}
	r.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), buildInfo(version))
	if intake != nil {
		r.reg.MustRegister(intakeCollector{intake})
	}
	if dl != nil {
		r.reg.MustRegister(deliveryCollector{dl})
	}
	return r
}

// buildInfo is relayq_build_info{version} 1, for dashboards.
func buildInfo(version string) prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "relayq_build_info",
		Help:        "Always 1; the version label is relayq's.",
		ConstLabels: prometheus.Labels{"version": version},
	})
	g.Set(1)
	return g
}

// AddQueue adds the queue's depth by state, the ages of its oldest
// messages and the size of its file, read when scraped (queue.go). now is
// the clock for the ages; nil means time.Now.
func (r *Registry) AddQueue(q *queue.Queue, now func() time.Time) {
	if now == nil {
		now = time.Now
	}
	r.reg.MustRegister(queueCollector{q: q, now: now})
}

// AddDeliverer adds the relays' pools and rate limits, read from the
// deliverer when scraped (delivery.go).
func (r *Registry) AddDeliverer(dv *delivery.Deliverer) {
	r.reg.MustRegister(poolCollector{dv})
}

// Handler serves the registry in Prometheus' exposition formats. An error
// of one collector (a closed queue) leaves the others to see; errors go to
// errorLog; a scrape is cut off after timeout.
func (r *Registry) Handler(errorLog *log.Logger, timeout time.Duration) http.Handler {
	return promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{
		ErrorLog:      errorLog,
		ErrorHandling: promhttp.ContinueOnError,
		Timeout:       timeout,
	})
}

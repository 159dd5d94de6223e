package main

import (
	"fmt"
	"log/slog"
	"strings"

	"relayq/config"
	"relayq/delivery"
	"relayq/route"
	"relayq/transport"
)

// relaySet builds delivery's relays and routes from [relay], [[relays]]
// and [[routes]], with a transport per relay (its own pool and rate
// limit). A config with [relay] alone is one relay, named in logs by its
// url as before; with several, each is named "ID (url)". On error no
// transport is left open.
func relaySet(cfg *config.Config, log *slog.Logger) (delivery.Relay, error) {
	list := cfg.RelayList()
	single := len(list) == 1 && len(cfg.Relays) == 0
	var eps []delivery.Endpoint
	closeAll := func() {
		for _, e := range eps {
			e.Transport.Close()
		}
	}
	for _, r := range list {
		topts, url, err := transportOptions(r.RelayConfig, log.With("relay", r.ID))
		if err != nil {
			closeAll()
			if single {
				return delivery.Relay{}, err
			}
			return delivery.Relay{}, fmt.Errorf("relay %q: %w", r.ID, err)
		}
		name := url
		if !single {
			name = r.ID + " (" + url + ")"
		}
		eps = append(eps, delivery.Endpoint{ID: r.ID, Name: name, Transport: transport.New(topts)})
	}
	routes, senders, err := routing(cfg)
	if err != nil {
		closeAll()
		return delivery.Relay{}, err
	}
	return delivery.Relay{
		Endpoints:     eps,
		Routes:        routes,
		Senders:       senders,
		Retry:         retryPolicy(cfg.Retry), // reload.go
		HoldUncertain: cfg.Delivery.Uncertain == config.UncertainHold,
	}, nil
}

// routing builds the routes of [[routes]] and the sender policy of each
// (rewrite.go), for the daemon and for `relayq rewrite --dry-run`.
func routing(cfg *config.Config) (*route.Table, map[string]delivery.SenderPolicy, error) {
	rules := make([]route.Rule, len(cfg.Routes))
	for i, r := range cfg.Routes {
		rules[i] = route.Rule{Name: r.Name, Sender: r.Sender, RecipientDomain: r.RecipientDomain, Relays: r.Relays}
	}
	routes, err := route.New(route.Options{Rules: rules, Default: cfg.DefaultRoute()})
	if err != nil {
		return nil, nil, err
	}
	var senders map[string]delivery.SenderPolicy
	if cfg.SenderPolicyAtDelivery() {
		if senders, err = senderPolicies(cfg, lookupHostNames()); err != nil {
			return nil, nil, err
		}
	}
	return routes, senders, nil
}

// relayNames lists the relays' names for the log line at start.
func relayNames(r delivery.Relay) string {
	names := make([]string, len(r.Endpoints))
	for i, e := range r.Endpoints {
		names[i] = e.Name
	}
	return strings.Join(names, ", ")
}

// noticeRelay is the relay a notice names as Remote-MTA: the one relay's
// url; "" (left out) with several, since a notice does not say which of
// them answered.
func noticeRelay(r delivery.Relay) string {
	if len(r.Endpoints) != 1 {
		return ""
	}
	return r.Endpoints[0].Name
}

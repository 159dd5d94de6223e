package main

import (
	"context"
	"errors"
	"fmt"
	"net/mail"
	"os"
	"strings"

	"relayq/api"
	"relayq/config"
)

// startAPI listens on the API's socket and loopback address ([api]),
// in front of intake: API messages take the socket's intake policy.
func (d *daemon) startAPI() (func(), error) {
	cfg := d.cfg
	if cfg.API.Socket == "" && cfg.API.Listen == "" {
		return func() {}, nil
	}
	opts, err := apiOptions(cfg)
	if err != nil {
		return nil, &startErr{exitConfig, err}
	}
	opts.Intake, opts.Queue, opts.Logger = d.intake, d.q, d.log
	srv := api.New(opts)
	if err := srv.Start(); err != nil {
		code := exitOSErr
		if errors.Is(err, api.ErrSocketInUse) {
			code = exitTempFail
		}
		return nil, &startErr{code, err}
	}
	d.apiSrv = srv
	d.log.Info("api listening", "socket", cfg.API.Socket, "listen", cfg.API.Listen)
	return func() { _ = srv.Shutdown(context.Background()) }, nil
}

// apiOptions turns [api] into api.Options; the token file is read here.
func apiOptions(cfg *config.Config) (api.Options, error) {
	a := cfg.API
	gid, err := cfg.Submission.SocketGID()
	if err != nil {
		return api.Options{}, err
	}
	o := api.Options{
		Socket:            a.Socket,
		SocketMode:        os.FileMode(cfg.Submission.SocketMode),
		SocketGID:         gid,
		Listen:            a.Listen,
		SocketAccess:      api.Access{Files: !a.DisableFileAccess, URLs: !a.DisableURLAccess},
		TCPAccess:         api.Access{Files: !a.ListenDisableFileAccess, URLs: !a.DisableURLAccess},
		FileRoots:         a.FileRoots,
		URLTimeout:        a.URLTimeout.Duration,
		URLMaxSize:        int64(a.URLMaxSize),
		MaxAttachmentSize: int64(a.MaxAttachmentSize),
		MaxAttachments:    a.MaxAttachments,
		MaxRequestSize:    int64(a.MaxRequestSize),
		MaxConnections:    a.MaxConnections,
		Hostname:          cfg.Submission.Hostname,
	}
	if f := cfg.Defaults.From; f != "" {
		// Validated at load: one address, perhaps with a name.
		if a, err := mail.ParseAddress(f); err == nil {
			o.DefaultFrom = a.Address
		}
	}
	if a.Listen != "" {
		b, err := os.ReadFile(a.TokenFile)
		if err != nil {
			return o, fmt.Errorf("api.token_file: %w", err)
		}
		o.Token = strings.TrimSpace(string(b))
		if len(o.Token) < 16 {
			return o, fmt.Errorf("api.token_file: %s: the token must be at least 16 characters", a.TokenFile)
		}
	}
	return o, nil
}

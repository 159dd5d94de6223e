package main

import (
	"bufio"
	"fmt"
	"log"
	"net"
	"os/exec"
	"strings"
	"time"

	"relayq/spool"
)

// restartAfterKill kills d with SIGKILL, as a crash would, and starts relayq
// serve again on the same file, printing what a local program and an SMTP
// client see while it recovers: the first greeting, a `relayq sendmail`
// call made once the daemon answers, the first 250 to a message over the
// socket (while the queue is not open, intake writes both into the
// maildrop before its 250: spool/starting.go), ready, and when the
// maildrop was empty again (both imported into the queue).
func restartAfterKill(d *daemon, bin, cfg, path, socket, maildrop string, cold bool) *daemon {
	if err := d.cmd.Process.Kill(); err != nil {
		log.Fatal(err)
	}
	_ = d.cmd.Wait()
	if cold {
		if err := dropCache(path); err != nil {
			log.Fatal(err)
		}
	}
	start := time.Now()
	type reply struct {
		at   time.Duration
		text string
	}
	accepted := make(chan reply, 1)
	go func() {
		for time.Since(start) < 5*time.Minute {
			if text, ok := submitOnce(socket); ok {
				accepted <- reply{time.Since(start), text}
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	type call struct {
		at, took time.Duration
		err      error
	}
	sent := make(chan call, 1)
	go func() {
		for time.Since(start) < 5*time.Minute {
			if c, err := net.Dial("unix", socket); err == nil {
				c.Close()
				break
			}
			time.Sleep(time.Millisecond)
		}
		at := time.Now()
		cmd := exec.Command(bin, "sendmail", "-c", cfg, "-f", "crash@example.org", "crashprobe@example.net")
		cmd.Stdin = strings.NewReader("Subject: sent while relayq recovers\r\n\r\nbody\r\n")
		err := cmd.Run()
		sent <- call{at.Sub(start), time.Since(at), err}
	}()
	nd := startDaemon(bin, cfg, socket)
	fmt.Printf("after kill -9:\n")
	fmt.Printf("  first answer   %v (%s)\n", nd.firstAnswer.Round(time.Millisecond), nd.firstReply)
	c := <-sent
	status := "exit 0"
	if c.err != nil {
		status = c.err.Error()
	}
	fmt.Printf("  sendmail       called at %v, %s in %v\n", c.at.Round(time.Millisecond), status, c.took.Round(time.Millisecond))
	fmt.Printf("  ready          %v\n", nd.ready.Round(time.Millisecond))
	a := <-accepted
	fmt.Printf("  first 250      %v (a message over the submission socket: %s)\n", a.at.Round(time.Millisecond), a.text)
	// The maildrop file is removed once its message is committed to the
	// queue (spool.Maildrop.Import).
	for time.Since(start) < 5*time.Minute {
		if n, err := spool.PendingMaildrop(maildrop); err == nil && n == 0 {
			fmt.Printf("  imported       %v (the maildrop empty: what it took while starting is in the queue)\n", time.Since(start).Round(time.Millisecond))
			break
		}
		time.Sleep(time.Millisecond)
	}
	return nd
}

// submitOnce sends one message over the submission socket and reports
// whether its end got a 250, and that reply.
func submitOnce(socket string) (string, bool) {
	c, err := net.Dial("unix", socket)
	if err != nil {
		return "", false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(c)
	var last string
	for _, step := range []struct{ send, want string }{
		{"", "220"},
		{"EHLO probe\r\n", "250"},
		{"MAIL FROM:<crash@example.org>\r\n", "250"},
		{"RCPT TO:<crashsocket@example.net>\r\n", "250"},
		{"DATA\r\n", "354"},
		{"Subject: over the socket while relayq recovers\r\n\r\nbody\r\n.\r\n", "250"},
	} {
		if step.send != "" {
			fmt.Fprint(c, step.send)
		}
		if last = lastReplyLine(r); !strings.HasPrefix(last, step.want) {
			return "", false
		}
	}
	fmt.Fprint(c, "QUIT\r\n")
	return last, true
}

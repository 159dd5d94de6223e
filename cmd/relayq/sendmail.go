package main

import "relayq/cmd/internal/sendmail"

// runSendmail is `relayq sendmail`: package sendmail, with -bp, -bi and -q
// run here as mailq, newaliases and flush, and -bs answered here when the
// daemon is down.
func runSendmail(args []string, env cmdEnv) int {
	return sendmail.Run(args, sendmail.Env(env), sendmail.Modes{
		List:       func(args []string, env sendmail.Env) int { return runMailq(args, cmdEnv(env)) },
		Aliases:    func(args []string, env sendmail.Env) int { return runNewaliases(args, cmdEnv(env)) },
		Flush:      func(args []string, env sendmail.Env) int { return runFlush(args, cmdEnv(env)) },
		Standalone: sendmail.ServeStandalone,
	})
}

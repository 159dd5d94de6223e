// Command nop does nothing and exits 0: the start-up cost of any Go
// program on the machine, the floor under `relayq sendmail` that
// bench/sendmail.sh reports.
package main

func main() {}

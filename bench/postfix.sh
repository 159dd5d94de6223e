# Sourced by bench/run.sh and bench/sendmail.sh: a private Postfix null
# client for the comparisons (the system's /etc/postfix is never used).
#
# write_postfix_null_client DIR RELAYHOST [PORT]: writes DIR/etc/main.cf
# and DIR/etc/master.cf for an instance whose queue, data and log are in
# DIR, relaying everything to RELAYHOST ("[127.0.0.1]:2525"), with smtpd on
# 127.0.0.1:PORT when PORT is given (pickup alone serves its sendmail).
# Needs $sudo ("" as root) for the data directory's owner.
write_postfix_null_client() {
	local dir=$1 relayhost=$2 port=${3:-}
	mkdir -p "$dir/etc" "$dir/spool" "$dir/data"
	$sudo chown postfix "$dir/data"
	cat >"$dir/etc/main.cf" <<EOF
# relayq benchmark: a Postfix null client, private instance
compatibility_level = 3.6
queue_directory = $dir/spool
data_directory = $dir/data
mail_owner = postfix
setgid_group = postdrop
maillog_file = $dir/postfix.log
maillog_file_prefixes = $dir
myhostname = nullclient.bench.test
myorigin = \$myhostname
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost = $relayhost
local_transport = error:local delivery is disabled
alias_maps =
alias_database =
smtp_tls_security_level = none
EOF
	# master.cf: smtpd on the loopback port (when asked), pickup for
	# sendmail, and the services a relay needs, none chrooted.
	{
		[ -z "$port" ] || echo "127.0.0.1:$port inet n - n - - smtpd"
		cat <<EOF
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
EOF
	} >"$dir/etc/master.cf"
}

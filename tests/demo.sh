#!/bin/sh
# make run: create (once) a demo configuration, TLS certificate, user and
# data directory under var/, then run the gateway in the foreground.
set -e
top=$(pwd)
var="$top/var"
conf="$var/gateway.conf"
mkdir -p "$var/tls"
chmod 700 "$var"
if [ ! -f "$var/tls/cert.pem" ]; then
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
		-subj /CN=mx.example.test \
		-addext subjectAltName=DNS:mx.example.test,DNS:localhost,IP:127.0.0.1 \
		-keyout "$var/tls/key.pem" -out "$var/tls/cert.pem" 2>/dev/null
	chmod 600 "$var/tls/key.pem"
	echo "make run: created a self-signed certificate in var/tls/"
fi
if [ ! -f "$conf" ]; then
	cat > "$conf" <<CONF
# Demo configuration made by 'make run'.  Reference: README.md.
hostname          = mx.example.test
local_domains     = example.test
data_dir          = $var
users_file        = $var/users
tls_cert_file     = $var/tls/cert.pem
tls_key_file      = $var/tls/key.pem
smtp_listen       = 127.0.0.1:2525
smtps_listen      = 127.0.0.1:2465
imap_listen       = 127.0.0.1:1143
imaps_listen      = 127.0.0.1:1993
pop3_listen       = 127.0.0.1:1110
pop3s_listen      = 127.0.0.1:1995
max_message_size  = 26214400
# The demo's DNS: dnsmasq on 127.0.0.1:5300 (started below) serves the
# demo zones and forwards everything else to /etc/resolv.conf's servers.
dns_servers       = 127.0.0.1:5300
rbl               = bl.demo.test 127.0.0.2=6
rules_dir         = $top/rules.d
CONF
	echo "make run: wrote $conf"
fi
# Demo zones: sender.test publishes SPF for this host and a DMARC
# policy; bl.demo.test lists 127.0.0.2 (send from it to see Junk).
cat > "$var/dnsmasq.conf" <<DNS
port=5300
listen-address=127.0.0.1
bind-interfaces
no-hosts
local=/demo.test/
local=/sender.test/
txt-record=sender.test,"v=spf1 ip4:127.0.0.0/8 -all"
txt-record=_dmarc.sender.test,"v=DMARC1; p=quarantine"
host-record=2.0.0.127.bl.demo.test,127.0.0.2
DNS
dns_pid=
if command -v dnsmasq >/dev/null 2>&1 || [ -x /usr/sbin/dnsmasq ]; then
	dnsmasq=$(command -v dnsmasq || echo /usr/sbin/dnsmasq)
	"$dnsmasq" --no-daemon --conf-file="$var/dnsmasq.conf" 2>"$var/dnsmasq.log" &
	dns_pid=$!
	sleep 0.2
	kill -0 "$dns_pid" 2>/dev/null || { echo "make run: dnsmasq did not start (port 5300 taken?): $(cat "$var/dnsmasq.log")" >&2; dns_pid=; }
fi
if [ ! -f "$var/demo-password" ]; then
	pw=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
	printf '%s\n' "$pw" | "$top/bin/mailctl" -c "$conf" user add demo@example.test
	(umask 077; printf '%s\n' "$pw" > "$var/demo-password")
fi
pw=$(cat "$var/demo-password")
cat <<TXT

  Demo gateway for example.test
  -----------------------------
  user:      demo@example.test
  password:  $pw        (also in var/demo-password)
  config:    var/gateway.conf

  Send a test mail (plain, STARTTLS, implicit TLS):
    swaks --server 127.0.0.1:2525 --from you@sender.test --to demo@example.test
    swaks --server 127.0.0.1:2525 --tls --from you@sender.test --to demo@example.test
    swaks --server 127.0.0.1:2465 --tlsc --from you@sender.test --to demo@example.test
  or with Python:
    /usr/bin/python3 -c 'import smtplib; smtplib.SMTP("127.0.0.1", 2525).sendmail("you@sender.test", ["demo@example.test"], "Subject: hi\r\n\r\nhello\r\n")'

  Read it over IMAP (imapd: 127.0.0.1:1143 with STARTTLS, 127.0.0.1:1993 implicit TLS;
  log in as demo@example.test with the password above; the certificate is self-signed):
    curl -k --user 'demo@example.test:$pw' 'imaps://127.0.0.1:1993/INBOX;UID=1'
    curl -k --ssl-reqd --user 'demo@example.test:$pw' imap://127.0.0.1:1143/ -X 'LIST "" *'
    openssl s_client -quiet -starttls imap -connect 127.0.0.1:1143    (then: a LOGIN demo@example.test $pw)
  Thunderbird/K-9: server 127.0.0.1, port 1993 SSL/TLS (or 1143 STARTTLS), normal password.
  POP3 (INBOX only): 127.0.0.1:1995 implicit TLS, 1110 with STLS:
    curl -k --user 'demo@example.test:$pw' pop3s://127.0.0.1:1995/1
  On disk: the Maildir var/mail/example.test/demo/ (mutt -f var/mail/example.test/demo/)

  Sender checks: you@sender.test passes SPF from this host (spf=pass, dmarc=pass in the
  Authentication-Results header); a client at 127.0.0.2 is on the demo blocklist and goes to Junk:
    swaks --server 127.0.0.1:2525 --local-interface 127.0.0.2 --from you@sender.test --to demo@example.test
  A From: of sender.test sent by another envelope domain fails DMARC (p=quarantine: Junk).

  Add users:  printf 'secret\n' | bin/mailctl -c var/gateway.conf user add bob@example.test
  Stop:       Ctrl-C.   Reload config: kill -HUP <pid>.

TXT
"$top/bin/imapd" -c "$conf" &
imapd_pid=$!
trap 'kill $imapd_pid $dns_pid 2>/dev/null; wait $imapd_pid $dns_pid 2>/dev/null' EXIT INT TERM
"$top/bin/filterd" -c "$conf"

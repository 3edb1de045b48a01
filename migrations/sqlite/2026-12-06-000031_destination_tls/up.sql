-- Syslog over TLS (RFC 5425) and CEF (issue 21): the certificate authorities a destination's
-- receiver is checked against besides the public roots (PEM; empty: the public roots only), and
-- the syslog message's format.
ALTER TABLE destinations ADD COLUMN ca_pem TEXT NOT NULL DEFAULT '';
ALTER TABLE destinations ADD COLUMN format TEXT NOT NULL DEFAULT 'rfc5424';

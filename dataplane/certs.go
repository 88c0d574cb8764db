package dataplane

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rafterlb/rafter/fsm"
	"github.com/rafterlb/rafter/secrets"
)

// errNoCertificate fails a handshake on a listener none of whose
// certificates could be loaded.
var errNoCertificate = errors.New("no certificate loaded for this listener")

// tlsState is the TLS material of one configuration: the SNI table of
// every https listener that names certificates. It is swapped as a whole;
// handshakes read it without locks.
type tlsState struct {
	listeners map[string]*sniTable
}

// sniTable picks a listener's certificate for a server name: the exact
// name, else the longest matching wildcard, else the default.
type sniTable struct {
	exact map[string]*tls.Certificate
	// wild is keyed by the suffix a wildcard covers: ".example.com" for
	// "*.example.com".
	wild map[string]*tls.Certificate
	def  *tls.Certificate
}

// pick returns the certificate for serverName (the client's SNI, "" when
// it sent none).
func (t *sniTable) pick(serverName string) *tls.Certificate {
	name := strings.TrimSuffix(serverName, ".")
	if name != "" {
		if hasUpper(name) {
			name = strings.ToLower(name)
		}
		if c := t.exact[name]; c != nil {
			return c
		}
		// Suffixes from the longest: "a.b.example.com" tries
		// ".b.example.com", then ".example.com", then ".com".
		for i := strings.IndexByte(name, '.'); i >= 0; {
			if c := t.wild[name[i:]]; c != nil {
				return c
			}
			j := strings.IndexByte(name[i+1:], '.')
			if j < 0 {
				break
			}
			i += 1 + j
		}
	}
	return t.def
}

func hasUpper(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 'A' && s[i] <= 'Z' {
			return true
		}
	}
	return false
}

// certLoadStatus is one certificate's load outcome on this node.
type certLoadStatus struct {
	name     string
	loaded   bool
	notAfter time.Time
}

// loadedCert is a certificate as last loaded, kept while its material is
// unchanged so that a configuration change opens and parses only what
// changed (and logs a failure once).
type loadedCert struct {
	cert, sealed string
	tc           *tls.Certificate
	err          error
}

// certManager turns the replicated certificates into SNI tables and keeps
// every https listener's tls.Config on the cluster's session-ticket keys.
type certManager struct {
	log  *slog.Logger
	keys *secrets.Keyring

	state atomic.Pointer[tlsState]
	// status is each certificate's load outcome, for metrics.
	status atomic.Pointer[[]certLoadStatus]
	// cache is touched only by update, which Run calls from one goroutine.
	cache map[string]*loadedCert

	mu          sync.Mutex
	configs     map[*tls.Config]struct{} // of running listeners
	ticketKeys  [][32]byte
	ticketIndex uint64
	ticketErr   bool
}

func newCertManager(log *slog.Logger, keys *secrets.Keyring) *certManager {
	m := &certManager{log: log, keys: keys, cache: map[string]*loadedCert{}, configs: map[*tls.Config]struct{}{}}
	m.state.Store(&tlsState{listeners: map[string]*sniTable{}})
	m.status.Store(&[]certLoadStatus{})
	return m
}

// material is what certificate name serves: its own chain and sealed key,
// or for an ACME certificate the issued ones ("" when none yet).
func material(cfg *fsm.Config, name string) (cert, sealed string) {
	c := cfg.Certificates[name]
	if c == nil {
		return "", ""
	}
	if c.Spec.ACME == nil {
		return c.Spec.Cert, c.Spec.EncryptedKey
	}
	if st := cfg.CertificateStatus[name]; st != nil {
		return st.Cert, st.EncryptedKey
	}
	return "", ""
}

func (m *certManager) load(name, cert, sealed string) *loadedCert {
	lc := &loadedCert{cert: cert, sealed: sealed}
	key, err := m.keys.Open(sealed, secrets.CertificateKeyAAD(name))
	if err != nil {
		lc.err = err
		return lc
	}
	tc, err := tls.X509KeyPair([]byte(cert), key)
	clear(key)
	if err == nil && tc.Leaf == nil {
		// SNI and metrics read the leaf (set unless GODEBUG
		// x509keypairleaf=0).
		tc.Leaf, err = x509.ParseCertificate(tc.Certificate[0])
	}
	if err != nil {
		lc.err = fmt.Errorf("parse certificate and key: %w", err)
		return lc
	}
	lc.tc = &tc
	return lc
}

// update builds the TLS state of cfg and stores it; handshakes that start
// afterwards use it. Listeners are not touched.
func (m *certManager) update(cfg *fsm.Config) {
	if cfg == nil {
		cfg = fsm.Empty()
	}
	loaded := make(map[string]*tls.Certificate, len(cfg.Certificates))
	status := make([]certLoadStatus, 0, len(cfg.Certificates))
	for name := range cfg.Certificates {
		cert, sealed := material(cfg, name)
		if cert == "" || sealed == "" {
			delete(m.cache, name)
			continue
		}
		lc := m.cache[name]
		if lc == nil || lc.cert != cert || lc.sealed != sealed {
			lc = m.load(name, cert, sealed)
			m.cache[name] = lc
			if lc.err != nil {
				m.log.Error("certificate not loaded; listeners serve their other certificates", "certificate", name, "err", lc.err,
					"action", certAction(lc.err))
			}
		}
		st := certLoadStatus{name: name}
		if lc.tc != nil {
			loaded[name] = lc.tc
			st.loaded, st.notAfter = true, lc.tc.Leaf.NotAfter
		}
		status = append(status, st)
	}
	m.status.Store(&status)
	for name := range m.cache {
		if _, ok := cfg.Certificates[name]; !ok {
			delete(m.cache, name)
		}
	}
	st := &tlsState{listeners: map[string]*sniTable{}}
	for ln, l := range cfg.Listeners {
		t := l.Spec.TLS
		if l.Spec.Protocol != "https" || t == nil || len(t.Certificates) == 0 {
			continue
		}
		st.listeners[ln] = buildSNI(t, loaded)
	}
	m.state.Store(st)
	m.updateTicketKeys(cfg.TicketKeys)
}

func certAction(err error) string {
	switch {
	case errors.Is(err, secrets.ErrNoKey), errors.Is(err, secrets.ErrUnknownKey):
		return "give this node the cluster's secrets key file (--secrets-key-file, the same file on every node) and restart it"
	case errors.Is(err, secrets.ErrMalformed):
		return "the sealed key does not open with this node's key file: check every node has the same --secrets-key-file, then apply the certificate again"
	}
	return "apply the certificate again with a valid chain and key"
}

// buildSNI indexes the loaded certificates a listener names, in its
// order: on a name two certificates cover, the one listed first wins.
func buildSNI(t *fsm.ListenerTLS, loaded map[string]*tls.Certificate) *sniTable {
	s := &sniTable{exact: map[string]*tls.Certificate{}, wild: map[string]*tls.Certificate{}}
	for _, n := range t.Certificates {
		tc := loaded[n]
		if tc == nil || tc.Leaf == nil {
			continue
		}
		for _, dns := range tc.Leaf.DNSNames {
			dns = strings.ToLower(strings.TrimSuffix(dns, "."))
			if suffix, ok := strings.CutPrefix(dns, "*"); ok && strings.HasPrefix(suffix, ".") {
				if _, dup := s.wild[suffix]; !dup {
					s.wild[suffix] = tc
				}
				continue
			}
			if _, dup := s.exact[dns]; !dup {
				s.exact[dns] = tc
			}
		}
	}
	// The default, or when it cannot be loaded the first that can: a
	// client without SNI is better served than refused.
	if s.def = loaded[t.DefaultCertificate()]; s.def == nil {
		for _, n := range t.Certificates {
			if s.def = loaded[n]; s.def != nil {
				break
			}
		}
	}
	return s
}

// updateTicketKeys opens the cluster's session-ticket keys when they
// changed and hands them to every running listener.
func (m *certManager) updateTicketKeys(tk *fsm.TicketKeys) {
	if tk == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if tk.ModifyIndex == m.ticketIndex {
		return
	}
	keys := make([][32]byte, 0, len(tk.Keys))
	var firstErr error
	for _, s := range tk.Keys {
		raw, err := m.keys.Open(s, secrets.TicketKeyAAD())
		if err == nil && len(raw) != 32 {
			err = fmt.Errorf("ticket key of %d bytes, want 32", len(raw))
		}
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		keys = append(keys, [32]byte(raw))
		clear(raw)
	}
	m.ticketIndex = tk.ModifyIndex
	if firstErr != nil {
		m.log.Error("TLS session-ticket keys not loaded; clients resume only on the node that issued their ticket", "err", firstErr,
			"action", certAction(firstErr))
	}
	if len(keys) == 0 || (len(keys) > 0 && slices.Equal(keys, m.ticketKeys)) {
		return
	}
	m.ticketKeys = keys
	for c := range m.configs {
		c.SetSessionTicketKeys(keys)
	}
}

// register makes c follow the cluster's ticket keys until unregister.
func (m *certManager) register(c *tls.Config) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.configs[c] = struct{}{}
	if len(m.ticketKeys) > 0 {
		c.SetSessionTicketKeys(m.ticketKeys)
	}
}

func (m *certManager) unregister(c *tls.Config) {
	if c == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.configs, c)
}

// cipherSuiteIDs maps fsm.TLSCipherSuites names to their ids.
func cipherSuiteIDs(names []string) []uint16 {
	if len(names) == 0 {
		names = fsm.TLSCipherSuites
	}
	var ids []uint16
	for _, n := range names {
		for _, cs := range tls.CipherSuites() {
			if cs.Name == n {
				ids = append(ids, cs.ID)
			}
		}
	}
	return ids
}

// tlsConfig builds the tls.Config of https listener name: its policy, its
// certificate files or its SNI table (looked up per handshake, so a
// certificate change needs no rebind), and the cluster's ticket keys.
func (m *certManager) tlsConfig(name string, spec *fsm.ListenerTLS) (*tls.Config, error) {
	if spec == nil {
		return nil, errors.New("https listener without tls")
	}
	c := &tls.Config{
		MinVersion: tls.VersionTLS12,
		// HTTP/1.1 only: the proxy speaks HTTP/1.x to clients.
		NextProtos: []string{"http/1.1"},
	}
	var suites []string
	if p := spec.Policy; p != nil {
		if p.MinVersion == fsm.TLSVersion13 {
			c.MinVersion = tls.VersionTLS13
		}
		suites = p.CipherSuites
	}
	c.CipherSuites = cipherSuiteIDs(suites)
	if spec.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(spec.CertFile, spec.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("loading certificate %s / key %s: %w", spec.CertFile, spec.KeyFile, err)
		}
		c.Certificates = []tls.Certificate{cert}
	} else {
		c.GetCertificate = func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			if t := m.state.Load().listeners[name]; t != nil {
				if tc := t.pick(hello.ServerName); tc != nil {
					return tc, nil
				}
			}
			return nil, errNoCertificate
		}
	}
	m.register(c)
	return c, nil
}

// sameBinding reports whether a listener serving spec a may keep serving
// spec b: they differ at most in which certificates an https listener
// names (tls.certificates, tls.default), which its SNI table follows
// without a rebind. Any other change starts the listener anew.
func sameBinding(a, b fsm.ListenerSpec) bool {
	if a == b {
		return true
	}
	at, bt := a.TLS, b.TLS
	if at == nil || bt == nil {
		return false
	}
	a.TLS, b.TLS = nil, nil
	if a != b {
		return false
	}
	return at.CertFile == bt.CertFile && at.KeyFile == bt.KeyFile &&
		reflect.DeepEqual(at.Policy, bt.Policy) && reflect.DeepEqual(at.HSTS, bt.HSTS)
}

// Command loadgen drives full RFC 8555 flows against one ACME server and reports JSON.
//
// Each of -concurrency clients creates one account (with EAB when -eab-kid is set), then
// the clients share -count certificates. Per certificate, on a fresh random name:
// newOrder, POST-as-GET authz, POST challenge, poll authz until valid, finalize, poll
// order until valid, download. The http-01 responses are served by this process on
// -http01-listen, so no per-certificate management call is needed; names resolve through
// whatever DNS the server under test is pointed at (the bench uses pebble-challtestsrv).
//
// It is a small hand-written client on the standard library instead of x/crypto/acme: that
// package sleeps a second between polls when the server sends no Retry-After, which would
// measure the client, and hides which request is which. Here every request is timed by
// kind, polls use one fixed interval for every server, and HTTP/1.1 is forced so that
// servers offering HTTP/2 get no transport advantage over those that do not.
//
// With -wait-go it prints {"phase":"accounts-ready"} after the accounts exist and waits for
// a line on stdin, so the caller can read the server's CPU time just before issuance.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

type config struct {
	directory    string
	caBundle     string
	insecure     bool
	count        int
	concurrency  int
	suffix       string
	http01       string
	pollInterval time.Duration
	flowTimeout  time.Duration
	reqTimeout   time.Duration
	runTimeout   time.Duration
	maxStalls    int
	eabKID       string
	eabHMAC      string
	waitGo       bool
}

func main() {
	var cfg config
	flag.StringVar(&cfg.directory, "directory", "", "ACME directory URL (required)")
	flag.StringVar(&cfg.caBundle, "ca-bundle", "", "PEM file of roots that sign the server's TLS certificate")
	flag.BoolVar(&cfg.insecure, "insecure", false, "do not verify the server's TLS certificate")
	flag.IntVar(&cfg.count, "count", 200, "certificates (flows) to run in total")
	flag.IntVar(&cfg.concurrency, "concurrency", 10, "concurrent clients, one account each")
	flag.StringVar(&cfg.suffix, "suffix", "bench.test", "domain under which random names are made")
	flag.StringVar(&cfg.http01, "http01-listen", "127.0.0.1:5002", "address of the http-01 responder")
	flag.DurationVar(&cfg.pollInterval, "poll", 50*time.Millisecond, "interval between polls of a pending authz/order")
	flag.DurationVar(&cfg.flowTimeout, "flow-timeout", 60*time.Second, "a flow still running after this is a stall")
	flag.DurationVar(&cfg.reqTimeout, "request-timeout", 30*time.Second, "timeout of one HTTP request")
	flag.DurationVar(&cfg.runTimeout, "run-timeout", 600*time.Second, "no flow starts after this")
	flag.IntVar(&cfg.maxStalls, "max-stalls", 0, "no flow starts after this many stalls (0: no limit); a hung server is not waited for again and again")
	flag.StringVar(&cfg.eabKID, "eab-kid", "", "external account binding key id")
	flag.StringVar(&cfg.eabHMAC, "eab-hmac", "", "external account binding HMAC key, base64url")
	flag.BoolVar(&cfg.waitGo, "wait-go", false, "after creating accounts, print a phase line and wait for a stdin line")
	flag.Parse()
	if cfg.directory == "" || cfg.count < 1 || cfg.concurrency < 1 {
		fmt.Fprintln(os.Stderr, "loadgen: -directory, -count >= 1 and -concurrency >= 1 are required")
		os.Exit(2)
	}
	res, err := run(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
	out, _ := json.Marshal(res)
	fmt.Println(string(out))
}

// ---- results ----

type kindStats struct {
	N    int     `json:"n"`
	P50  float64 `json:"p50_ms"`
	P99  float64 `json:"p99_ms"`
	Max  float64 `json:"max_ms"`
	Mean float64 `json:"mean_ms"`
}

type result struct {
	Directory       string               `json:"directory"`
	Count           int                  `json:"count"`
	Concurrency     int                  `json:"concurrency"`
	Issued          int64                `json:"issued"`
	Stalls          int64                `json:"stalls"`
	RetryableErrors int64                `json:"retryable_errors"`
	OtherErrors     int64                `json:"other_errors"`
	NotStarted      int64                `json:"not_started"`
	ErrorSamples    []string             `json:"error_samples"`
	AccountsSeconds float64              `json:"accounts_seconds"`
	ElapsedSeconds  float64              `json:"elapsed_seconds"`
	CertsPerSecond  float64              `json:"certs_per_second"`
	Requests        int                  `json:"requests"`
	RequestsPerCert float64              `json:"requests_per_cert"`
	BadNonceRetries int64                `json:"bad_nonce_retries"`
	ClientCPU       float64              `json:"client_cpu_seconds"`
	Latency         map[string]kindStats `json:"latency"`
	AllRequests     kindStats            `json:"all_requests"`
	Flow            kindStats            `json:"flow"`
}

type recorder struct {
	mu      sync.Mutex
	byKind  map[string][]time.Duration
	flows   []time.Duration
	samples []string
}

func (r *recorder) add(kind string, d time.Duration) {
	r.mu.Lock()
	r.byKind[kind] = append(r.byKind[kind], d)
	r.mu.Unlock()
}

func (r *recorder) flow(d time.Duration) {
	r.mu.Lock()
	r.flows = append(r.flows, d)
	r.mu.Unlock()
}

func (r *recorder) sample(err error) {
	r.mu.Lock()
	if len(r.samples) < 8 {
		r.samples = append(r.samples, err.Error())
	}
	r.mu.Unlock()
}

func summarize(ds []time.Duration) kindStats {
	if len(ds) == 0 {
		return kindStats{}
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	pct := func(p float64) time.Duration {
		i := int(p*float64(len(s))+0.5) - 1
		if i < 0 {
			i = 0
		}
		if i >= len(s) {
			i = len(s) - 1
		}
		return s[i]
	}
	return kindStats{N: len(s), P50: ms(pct(0.50)), P99: ms(pct(0.99)), Max: ms(s[len(s)-1]), Mean: ms(sum / time.Duration(len(s)))}
}

// ---- run ----

func run(cfg config) (*result, error) {
	tlsCfg := &tls.Config{InsecureSkipVerify: cfg.insecure} //nolint:gosec // bench flag
	if cfg.caBundle != "" {
		pem, err := os.ReadFile(cfg.caBundle)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("no certificate in %s", cfg.caBundle)
		}
		tlsCfg.RootCAs = pool
	}
	transport := &http.Transport{
		TLSClientConfig:     tlsCfg,
		TLSNextProto:        map[string]func(string, *tls.Conn) http.RoundTripper{}, // HTTP/1.1 only
		MaxIdleConns:        cfg.concurrency * 2,
		MaxIdleConnsPerHost: cfg.concurrency * 2,
		IdleConnTimeout:     90 * time.Second,
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
		TLSHandshakeTimeout: 10 * time.Second,
	}
	httpc := &http.Client{Transport: transport, Timeout: cfg.reqTimeout}

	responder, err := startResponder(cfg.http01)
	if err != nil {
		return nil, err
	}
	defer responder.close()

	rec := &recorder{byKind: map[string][]time.Duration{}}
	dir, err := fetchDirectory(httpc, cfg.directory, rec)
	if err != nil {
		return nil, err
	}
	certKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}

	// Accounts, concurrently, before the clock for issuance starts.
	accStart := time.Now()
	clients := make([]*client, cfg.concurrency)
	errs := make(chan error, cfg.concurrency)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			c, err := newClient(httpc, dir, rec)
			if err == nil {
				ctx, cancel := context.WithTimeout(context.Background(), cfg.flowTimeout)
				err = c.register(ctx, cfg.eabKID, cfg.eabHMAC)
				cancel()
			}
			if err != nil {
				errs <- fmt.Errorf("account %d: %w", i, err)
				return
			}
			clients[i] = c
		}(i)
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return nil, err
	}
	accounts := time.Since(accStart)

	if cfg.waitGo {
		fmt.Println(`{"phase":"accounts-ready"}`)
		if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
			return nil, fmt.Errorf("waiting for go: %w", err)
		}
	}
	// Only the issuance phase counts in the latency tables.
	rec.mu.Lock()
	rec.byKind = map[string][]time.Duration{}
	rec.mu.Unlock()

	res := &result{Directory: cfg.directory, Count: cfg.count, Concurrency: cfg.concurrency, AccountsSeconds: accounts.Seconds()}
	cpuStart := cpuSeconds()
	var next atomic.Int64
	runDeadline := time.Now().Add(cfg.runTimeout)
	start := time.Now()
	for _, c := range clients {
		wg.Add(1)
		go func(c *client) {
			defer wg.Done()
			for {
				if time.Now().After(runDeadline) {
					return
				}
				if cfg.maxStalls > 0 && atomic.LoadInt64(&res.Stalls) >= int64(cfg.maxStalls) {
					return
				}
				if next.Add(1) > int64(cfg.count) {
					return
				}
				ctx, cancel := context.WithTimeout(context.Background(), cfg.flowTimeout)
				t0 := time.Now()
				err := c.issue(ctx, cfg, certKey, responder)
				stalled := ctx.Err() != nil || isTimeout(err)
				cancel()
				switch {
				case err == nil:
					atomic.AddInt64(&res.Issued, 1)
					rec.flow(time.Since(t0))
				case stalled:
					atomic.AddInt64(&res.Stalls, 1)
					rec.sample(fmt.Errorf("stall after %s: %w", time.Since(t0).Round(time.Millisecond), err))
				case retryable(err):
					atomic.AddInt64(&res.RetryableErrors, 1)
					rec.sample(err)
				default:
					atomic.AddInt64(&res.OtherErrors, 1)
					rec.sample(err)
				}
			}
		}(c)
	}
	wg.Wait()
	elapsed := time.Since(start)
	res.ClientCPU = cpuSeconds() - cpuStart
	started := next.Load()
	if started > int64(cfg.count) {
		started = int64(cfg.count)
	}
	res.NotStarted = int64(cfg.count) - started
	res.ElapsedSeconds = elapsed.Seconds()
	res.CertsPerSecond = float64(res.Issued) / elapsed.Seconds()
	res.Latency = map[string]kindStats{}
	var all []time.Duration
	for kind, ds := range rec.byKind {
		res.Latency[kind] = summarize(ds)
		all = append(all, ds...)
	}
	res.Requests = len(all)
	res.AllRequests = summarize(all)
	res.Flow = summarize(rec.flows)
	if res.Issued > 0 {
		res.RequestsPerCert = float64(res.Requests) / float64(res.Issued)
	}
	for _, c := range clients {
		res.BadNonceRetries += c.badNonce
	}
	res.ErrorSamples = rec.samples
	if res.ErrorSamples == nil {
		res.ErrorSamples = []string{}
	}
	return res, nil
}

// ---- http-01 responder ----

type responder struct {
	tokens sync.Map
	srv    *http.Server
}

func startResponder(addr string) (*responder, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("http-01 responder: %w", err)
	}
	r := &responder{}
	const prefix = "/.well-known/acme-challenge/"
	r.srv = &http.Server{
		ReadHeaderTimeout: 10 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if v, ok := r.tokens.Load(strings.TrimPrefix(req.URL.Path, prefix)); ok && strings.HasPrefix(req.URL.Path, prefix) {
				w.Header().Set("Content-Type", "application/octet-stream")
				_, _ = io.WriteString(w, v.(string))
				return
			}
			http.NotFound(w, req)
		}),
	}
	go func() { _ = r.srv.Serve(ln) }()
	return r, nil
}

func (r *responder) close() { _ = r.srv.Close() }

// ---- ACME client ----

type directory struct {
	NewNonce   string `json:"newNonce"`
	NewAccount string `json:"newAccount"`
	NewOrder   string `json:"newOrder"`
}

type problem struct {
	Type   string `json:"type"`
	Detail string `json:"detail"`
	Status int    `json:"status"`
}

type acmeError struct {
	kind   string
	status int
	prob   problem
	body   string
}

func (e *acmeError) Error() string {
	if e.prob.Type != "" {
		return fmt.Sprintf("%s: HTTP %d %s: %s", e.kind, e.status, e.prob.Type, e.prob.Detail)
	}
	return fmt.Sprintf("%s: HTTP %d: %.200s", e.kind, e.status, e.body)
}

// retryable: errors the server marks as temporary (RFC 8555 6.6 rateLimited, 503, 429,
// badNonce that survived the retries), and connection-level failures.
func retryable(err error) bool {
	var ae *acmeError
	if errors.As(err, &ae) {
		return ae.status == http.StatusServiceUnavailable || ae.status == http.StatusTooManyRequests ||
			strings.HasSuffix(ae.prob.Type, ":rateLimited") || strings.HasSuffix(ae.prob.Type, ":badNonce")
	}
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// isTimeout: a request that got no answer within -request-timeout; the flow hung.
func isTimeout(err error) bool {
	var ne net.Error
	return err != nil && (errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded))
}

func fetchDirectory(httpc *http.Client, url string, rec *recorder) (directory, error) {
	var d directory
	t0 := time.Now()
	resp, err := httpc.Get(url)
	if err != nil {
		return d, err
	}
	defer resp.Body.Close()
	rec.add("directory", time.Since(t0))
	if resp.StatusCode != http.StatusOK {
		return d, fmt.Errorf("directory: HTTP %d", resp.StatusCode)
	}
	return d, json.NewDecoder(resp.Body).Decode(&d)
}

type client struct {
	httpc    *http.Client
	dir      directory
	rec      *recorder
	key      *ecdsa.PrivateKey
	jwk      map[string]string
	thumb    string
	kid      string
	nonce    string
	badNonce int64
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func newClient(httpc *http.Client, dir directory, rec *recorder) (*client, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	pad := func(n *big.Int) string { return b64(n.FillBytes(make([]byte, 32))) }
	jwk := map[string]string{"crv": "P-256", "kty": "EC", "x": pad(key.X), "y": pad(key.Y)}
	// RFC 7638 thumbprint: the required members in lexicographic order, no whitespace.
	canon := fmt.Sprintf(`{"crv":"P-256","kty":"EC","x":"%s","y":"%s"}`, jwk["x"], jwk["y"])
	sum := sha256.Sum256([]byte(canon))
	return &client{httpc: httpc, dir: dir, rec: rec, key: key, jwk: jwk, thumb: b64(sum[:])}, nil
}

func (c *client) sign(data []byte) ([]byte, error) {
	h := sha256.Sum256(data)
	r, s, err := ecdsa.Sign(rand.Reader, c.key, h[:])
	if err != nil {
		return nil, err
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return sig, nil
}

func (c *client) fetchNonce(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, c.dir.NewNonce, nil)
	if err != nil {
		return err
	}
	t0 := time.Now()
	resp, err := c.httpc.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	c.rec.add("nonce", time.Since(t0))
	c.nonce = resp.Header.Get("Replay-Nonce")
	if c.nonce == "" {
		return fmt.Errorf("nonce: HTTP %d without Replay-Nonce", resp.StatusCode)
	}
	return nil
}

// post sends one JWS (payload nil = POST-as-GET) and returns the response body and headers.
// A badNonce answer is retried with the nonce it carries, up to 3 times.
func (c *client) post(ctx context.Context, kind, url string, payload any, extra map[string]any) ([]byte, http.Header, error) {
	body := ""
	if payload != nil {
		raw, err := json.Marshal(payload)
		if err != nil {
			return nil, nil, err
		}
		body = b64(raw)
	}
	for attempt := 0; ; attempt++ {
		if c.nonce == "" {
			if err := c.fetchNonce(ctx); err != nil {
				return nil, nil, err
			}
		}
		header := map[string]any{"alg": "ES256", "nonce": c.nonce, "url": url}
		if c.kid != "" {
			header["kid"] = c.kid
		} else {
			header["jwk"] = c.jwk
		}
		c.nonce = ""
		hdr, _ := json.Marshal(header)
		protected := b64(hdr)
		sig, err := c.sign([]byte(protected + "." + body))
		if err != nil {
			return nil, nil, err
		}
		jws := map[string]any{"protected": protected, "payload": body, "signature": b64(sig)}
		for k, v := range extra {
			jws[k] = v
		}
		raw, _ := json.Marshal(jws)
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(raw))
		if err != nil {
			return nil, nil, err
		}
		req.Header.Set("Content-Type", "application/jose+json")
		t0 := time.Now()
		resp, err := c.httpc.Do(req)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", kind, err)
		}
		data, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		c.rec.add(kind, time.Since(t0))
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", kind, err)
		}
		c.nonce = resp.Header.Get("Replay-Nonce")
		if resp.StatusCode < 400 {
			return data, resp.Header, nil
		}
		ae := &acmeError{kind: kind, status: resp.StatusCode, body: string(data)}
		_ = json.Unmarshal(data, &ae.prob)
		if strings.HasSuffix(ae.prob.Type, ":badNonce") && attempt < 3 {
			c.badNonce++
			continue
		}
		return nil, nil, ae
	}
}

func (c *client) register(ctx context.Context, eabKID, eabHMAC string) error {
	payload := map[string]any{"termsOfServiceAgreed": true}
	if eabKID != "" {
		key, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(eabHMAC, "="))
		if err != nil {
			return fmt.Errorf("eab-hmac: %w", err)
		}
		hdr, _ := json.Marshal(map[string]string{"alg": "HS256", "kid": eabKID, "url": c.dir.NewAccount})
		jwk, _ := json.Marshal(c.jwk)
		protected, pl := b64(hdr), b64(jwk)
		mac := hmac.New(sha256.New, key)
		mac.Write([]byte(protected + "." + pl))
		payload["externalAccountBinding"] = map[string]string{
			"protected": protected, "payload": pl, "signature": b64(mac.Sum(nil)),
		}
	}
	_, h, err := c.post(ctx, "newAccount", c.dir.NewAccount, payload, nil)
	if err != nil {
		return err
	}
	c.kid = h.Get("Location")
	if c.kid == "" {
		return errors.New("newAccount: no Location")
	}
	return nil
}

type order struct {
	Status         string   `json:"status"`
	Authorizations []string `json:"authorizations"`
	Finalize       string   `json:"finalize"`
	Certificate    string   `json:"certificate"`
}

type authz struct {
	Status     string `json:"status"`
	Challenges []struct {
		Type  string `json:"type"`
		URL   string `json:"url"`
		Token string `json:"token"`
	} `json:"challenges"`
}

func (c *client) issue(ctx context.Context, cfg config, certKey *ecdsa.PrivateKey, r *responder) error {
	label := make([]byte, 8)
	_, _ = rand.Read(label)
	name := hex.EncodeToString(label) + "." + cfg.suffix

	data, h, err := c.post(ctx, "newOrder", c.dir.NewOrder,
		map[string]any{"identifiers": []map[string]string{{"type": "dns", "value": name}}}, nil)
	if err != nil {
		return err
	}
	var o order
	if err := json.Unmarshal(data, &o); err != nil {
		return fmt.Errorf("newOrder: %w", err)
	}
	orderURL := h.Get("Location")
	if len(o.Authorizations) != 1 || orderURL == "" {
		return fmt.Errorf("newOrder: %d authorizations, Location %q", len(o.Authorizations), orderURL)
	}
	authzURL := o.Authorizations[0]
	data, _, err = c.post(ctx, "authz", authzURL, nil, nil)
	if err != nil {
		return err
	}
	var a authz
	if err := json.Unmarshal(data, &a); err != nil {
		return fmt.Errorf("authz: %w", err)
	}
	if a.Status != "valid" {
		var chURL, token string
		for _, ch := range a.Challenges {
			if ch.Type == "http-01" {
				chURL, token = ch.URL, ch.Token
			}
		}
		if chURL == "" {
			return errors.New("authz: no http-01 challenge")
		}
		r.tokens.Store(token, token+"."+c.thumb)
		defer r.tokens.Delete(token)
		if _, _, err := c.post(ctx, "challenge", chURL, struct{}{}, nil); err != nil {
			return err
		}
		for a.Status != "valid" {
			if a.Status == "invalid" {
				return fmt.Errorf("authz invalid: %s", data)
			}
			if err := sleep(ctx, cfg.pollInterval); err != nil {
				return err
			}
			if data, _, err = c.post(ctx, "pollAuthz", authzURL, nil, nil); err != nil {
				return err
			}
			if err := json.Unmarshal(data, &a); err != nil {
				return fmt.Errorf("pollAuthz: %w", err)
			}
		}
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{}, DNSNames: []string{name},
	}, crypto.Signer(certKey))
	if err != nil {
		return err
	}
	data, _, err = c.post(ctx, "finalize", o.Finalize, map[string]string{"csr": b64(csr)}, nil)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, &o); err != nil {
		return fmt.Errorf("finalize: %w", err)
	}
	// RFC 8555 7.4: poll the order until it is valid (at least once, as a client that does
	// not trust the finalize answer's status would; servers that finalize synchronously
	// answer the first poll with "valid").
	for first := true; first || o.Status != "valid"; first = false {
		if o.Status == "invalid" {
			return fmt.Errorf("order invalid: %s", data)
		}
		if !first || o.Status != "valid" {
			if err := sleep(ctx, cfg.pollInterval); err != nil {
				return err
			}
		}
		if data, _, err = c.post(ctx, "pollOrder", orderURL, nil, nil); err != nil {
			return err
		}
		if err := json.Unmarshal(data, &o); err != nil {
			return fmt.Errorf("pollOrder: %w", err)
		}
	}
	data, _, err = c.post(ctx, "certificate", o.Certificate, nil, nil)
	if err != nil {
		return err
	}
	if !bytes.Contains(data, []byte("-----BEGIN CERTIFICATE-----")) {
		return fmt.Errorf("certificate: not PEM: %.100s", data)
	}
	return nil
}

// cpuSeconds: user+system CPU of this process so far (the load generator's own cost).
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime) + tv(ru.Stime)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

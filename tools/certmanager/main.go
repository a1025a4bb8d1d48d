// Command certmanager-controller starts the cert-manager controller out of
// cluster for acme-gateway's end-to-end tests.
//
// Why this file exists: upstream's cmd/controller is a separate Go module that
// the Go module proxy does not serve, so it cannot be built with `go install`.
// The controllers themselves live in the public packages of
// github.com/cert-manager/cert-manager (pinned in go.mod); this main only wires
// them together the way upstream's controller app does: options -> controller
// ContextFactory -> registered controllers -> shared informers, plus metrics,
// liveness and (optional) leader election.
//
// Only the controllers the tests need are compiled in (ACME, CA, self-signed
// issuers and the Certificate machinery); Vault/Venafi and the Ingress/Gateway
// shims are left out. This is test tooling and is not shipped.
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"
	"golang.org/x/sync/errgroup"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	logsapi "k8s.io/component-base/logs/api/v1"

	"github.com/cert-manager/cert-manager/pkg/controller"
	"github.com/cert-manager/cert-manager/pkg/controller/clusterissuers"
	"github.com/cert-manager/cert-manager/pkg/healthz"
	dnsutil "github.com/cert-manager/cert-manager/pkg/issuer/acme/dns/util"
	logf "github.com/cert-manager/cert-manager/pkg/logs"
	"github.com/cert-manager/cert-manager/pkg/util"
	utilfeature "github.com/cert-manager/cert-manager/pkg/util/feature"

	// Each import registers its controller (or issuer backend) in init().
	_ "github.com/cert-manager/cert-manager/pkg/controller/acmechallenges"
	_ "github.com/cert-manager/cert-manager/pkg/controller/acmeorders"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/acme"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/approver"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/ca"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/selfsigned"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/issuing"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/keymanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/metrics"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/readiness"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/requestmanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/revisionmanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/trigger"
	_ "github.com/cert-manager/cert-manager/pkg/controller/issuers"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/acme"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/ca"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/selfsigned"
)

// options mirrors the subset of upstream controller flags the tests use.
type options struct {
	kubeconfig, apiServerHost, namespace string
	clusterResourceNamespace             string
	leaderElect                          bool
	leaderElectionNamespace              string
	metricsAddr, healthzAddr             string
	controllers                          []string
	workers, maxConcurrentChallenges     int
	qps                                  float32
	burst                                int
	dns01Nameservers                     []string
	dns01NameserversOnly                 bool
	dns01CheckRetryPeriod                time.Duration
	issuerAmbient, clusterIssuerAmbient  bool
	enableOwnerRef                       bool
	http01SolverImage                    string
	showVersion                          bool
	logging                              *logsapi.LoggingConfiguration
}

func parseFlags(args []string) (*options, error) {
	o := &options{logging: logsapi.NewLoggingConfiguration()}
	fs := pflag.NewFlagSet("certmanager-controller", pflag.ContinueOnError)
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "Path to a kubeconfig (required unless running in cluster).")
	fs.StringVar(&o.apiServerHost, "master", "", "Optional API server URL, overrides the kubeconfig's server.")
	fs.StringVar(&o.namespace, "namespace", "", "Only watch this namespace (default: all namespaces).")
	fs.StringVar(&o.clusterResourceNamespace, "cluster-resource-namespace", "kube-system", "Namespace holding Secrets referenced by ClusterIssuers.")
	fs.BoolVar(&o.leaderElect, "leader-elect", true, "Use a Lease for leader election before starting controllers.")
	fs.StringVar(&o.leaderElectionNamespace, "leader-election-namespace", "kube-system", "Namespace of the leader election Lease.")
	fs.StringVar(&o.metricsAddr, "metrics-listen-address", "127.0.0.1:9402", "Prometheus metrics listener (host:port, port 0 picks one).")
	fs.StringVar(&o.healthzAddr, "healthz-listen-address", "127.0.0.1:9403", "Liveness (/livez) listener (host:port, port 0 picks one).")
	fs.StringSliceVar(&o.controllers, "controllers", []string{"*"}, "Controllers to run: '*' for all compiled in, 'name' to add, '-name' to remove.")
	fs.IntVar(&o.workers, "concurrent-workers", 5, "Workers per controller.")
	fs.IntVar(&o.maxConcurrentChallenges, "max-concurrent-challenges", 60, "Maximum challenges processed at once.")
	fs.Float32Var(&o.qps, "kube-api-qps", 20, "Client-side QPS limit when API Priority and Fairness is off.")
	fs.IntVar(&o.burst, "kube-api-burst", 50, "Client-side burst limit when API Priority and Fairness is off.")
	fs.StringSliceVar(&o.dns01Nameservers, "dns01-recursive-nameservers", nil, "host:port nameservers used for DNS-01 self checks.")
	fs.BoolVar(&o.dns01NameserversOnly, "dns01-recursive-nameservers-only", false, "Only query the recursive nameservers, never the zone's authoritative ones.")
	fs.DurationVar(&o.dns01CheckRetryPeriod, "dns01-check-retry-period", 10*time.Second, "Wait between DNS-01 self checks.")
	fs.BoolVar(&o.issuerAmbient, "issuer-ambient-credentials", false, "Let Issuers use ambient credentials.")
	fs.BoolVar(&o.clusterIssuerAmbient, "cluster-issuer-ambient-credentials", true, "Let ClusterIssuers use ambient credentials.")
	fs.BoolVar(&o.enableOwnerRef, "enable-certificate-owner-ref", false, "Make Certificates own their Secrets.")
	fs.StringVar(&o.http01SolverImage, "acme-http01-solver-image", "quay.io/jetstack/cert-manager-acmesolver:"+util.AppVersion, "Image for HTTP-01 solver pods.")
	fs.BoolVar(&o.showVersion, "version", false, "Print the cert-manager version and exit.")
	utilfeature.DefaultMutableFeatureGate.AddFlag(fs)
	logf.AddFlags(o.logging, fs)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	for _, ns := range o.dns01Nameservers {
		if _, _, err := net.SplitHostPort(ns); err != nil {
			return nil, fmt.Errorf("--dns01-recursive-nameservers %q: want host:port: %w", ns, err)
		}
	}
	if err := logf.ValidateAndApply(o.logging); err != nil {
		return nil, err
	}
	return o, nil
}

// enabledControllers resolves --controllers against the compiled-in set and
// refuses unknown names so a typo fails loudly instead of silently doing nothing.
func enabledControllers(o *options) ([]string, error) {
	known := controller.Known()
	enabled := map[string]bool{}
	for _, raw := range o.controllers {
		name := strings.TrimPrefix(raw, "-")
		switch {
		case raw == "*":
			for n := range known {
				enabled[n] = true
			}
		case known[name] == nil:
			return nil, fmt.Errorf("--controllers: unknown controller %q (compiled in: %v)", name, sortedKeys(known))
		default:
			enabled[name] = !strings.HasPrefix(raw, "-")
		}
	}
	if o.namespace != "" {
		enabled[clusterissuers.ControllerName] = false // cluster scoped, as upstream
	}
	var names []string
	for n, on := range enabled {
		if on {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return names, nil
}

func sortedKeys(m map[string]controller.Constructor) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func contextOptions(o *options) (controller.ContextOptions, error) {
	var q [4]resource.Quantity
	for i, s := range []string{"10m", "64Mi", "100m", "64Mi"} { // upstream solver defaults
		q[i] = resource.MustParse(s)
	}
	nameservers := o.dns01Nameservers
	if len(nameservers) == 0 {
		nameservers = dnsutil.RecursiveNameservers
	}
	return controller.ContextOptions{
		APIServerHost:      o.apiServerHost,
		Kubeconfig:         o.kubeconfig,
		KubernetesAPIQPS:   o.qps,
		KubernetesAPIBurst: o.burst,
		Namespace:          o.namespace,
		IssuerOptions: controller.IssuerOptions{
			ClusterResourceNamespace:        o.clusterResourceNamespace,
			ClusterIssuerAmbientCredentials: o.clusterIssuerAmbient,
			IssuerAmbientCredentials:        o.issuerAmbient,
		},
		ACMEOptions: controller.ACMEOptions{
			HTTP01SolverImage:                 o.http01SolverImage,
			HTTP01SolverResourceRequestCPU:    q[0],
			HTTP01SolverResourceRequestMemory: q[1],
			HTTP01SolverResourceLimitsCPU:     q[2],
			HTTP01SolverResourceLimitsMemory:  q[3],
			ACMEHTTP01SolverRunAsNonRoot:      true,
			DNS01CheckAuthoritative:           !o.dns01NameserversOnly,
			DNS01Nameservers:                  nameservers,
			DNS01CheckRetryPeriod:             o.dns01CheckRetryPeriod,
		},
		IngressShimOptions: controller.IngressShimOptions{
			DefaultIssuerKind:                 "Issuer",
			DefaultIssuerGroup:                "cert-manager.io",
			DefaultAutoCertificateAnnotations: []string{"kubernetes.io/tls-acme"},
		},
		CertificateOptions: controller.CertificateOptions{
			EnableOwnerRef:                           o.enableOwnerRef,
			CopiedAnnotationPrefixes:                 []string{"*", "-kubectl.kubernetes.io/", "-fluxcd.io/", "-argocd.argoproj.io/"},
			CertificateRequestMinimumBackoffDuration: time.Hour,
			CertificateRequestMaximumBackoffDuration: 32 * time.Hour,
		},
		SchedulerOptions: controller.SchedulerOptions{MaxConcurrentChallenges: o.maxConcurrentChallenges},
	}, nil
}

func serveHTTP(ctx context.Context, g *errgroup.Group, srv *http.Server, ln net.Listener) {
	g.Go(func() error {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(shutdown) //nolint:contextcheck // root ctx is already done
	})
	g.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
}

func run(rootCtx context.Context, o *options) error {
	rootCtx, cancel := context.WithCancel(rootCtx)
	defer cancel()
	log := logf.FromContext(rootCtx)
	g, rootCtx := errgroup.WithContext(rootCtx)

	names, err := enabledControllers(o)
	if err != nil {
		return err
	}
	ctxOpts, err := contextOptions(o)
	if err != nil {
		return err
	}
	log.Info("configured acme dns01 nameservers", "nameservers", ctxOpts.DNS01Nameservers, "authoritative_check", ctxOpts.DNS01CheckAuthoritative)
	factory, err := controller.NewContextFactory(rootCtx, ctxOpts)
	if err != nil {
		return fmt.Errorf("building controller context: %w", err)
	}
	cmctx, err := factory.Build()
	if err != nil {
		return err
	}
	log.Info("enabled controllers", "controllers", names)

	metricsLn, err := net.Listen("tcp", o.metricsAddr)
	if err != nil {
		return fmt.Errorf("metrics listener %s: %w", o.metricsAddr, err)
	}
	healthzLn, err := net.Listen("tcp", o.healthzAddr)
	if err != nil {
		return fmt.Errorf("healthz listener %s: %w", o.healthzAddr, err)
	}
	// Constructing controllers registers metric collectors, so build them before
	// the metrics server.
	ifaces := map[string]controller.Interface{}
	for _, n := range names {
		iface, err := controller.Known()[n](factory)
		if err != nil {
			return fmt.Errorf("constructing controller %s: %w", n, err)
		}
		ifaces[n] = iface
	}
	serveHTTP(rootCtx, g, cmctx.Metrics.NewServer(metricsLn), metricsLn)
	log.Info("listening", "server", "metrics", "address", metricsLn.Addr().String())
	health := healthz.NewServer(20 * time.Second)
	g.Go(func() error { return health.Start(rootCtx, healthzLn) })
	log.Info("listening", "server", "healthz", "address", healthzLn.Addr().String(), "path", "/livez")

	elected := make(chan struct{})
	if o.leaderElect {
		if err := startLeaderElection(rootCtx, g, o, factory, health, elected); err != nil {
			return err
		}
	} else {
		close(elected)
	}
	select {
	case <-rootCtx.Done():
		return g.Wait()
	case <-elected:
	}

	for n, iface := range ifaces {
		log.Info("starting controller", "controller", n)
		g.Go(func() error { return iface.Run(o.workers, rootCtx) })
	}
	cmctx.SharedInformerFactory.Start(rootCtx.Done())
	cmctx.KubeSharedInformerFactory.Start(rootCtx.Done())
	cmctx.HTTP01ResourceMetadataInformersFactory.Start(rootCtx.Done())
	g.Go(func() error {
		cmctx.SharedInformerFactory.WaitForCacheSync(rootCtx.Done())
		cmctx.KubeSharedInformerFactory.WaitForCacheSync(rootCtx.Done())
		if rootCtx.Err() == nil {
			log.Info("informer caches synced")
		}
		return nil
	})

	err = g.Wait()
	cmctx.HTTP01ResourceMetadataInformersFactory.Shutdown()
	cmctx.KubeSharedInformerFactory.Shutdown()
	cmctx.SharedInformerFactory.Shutdown()
	log.Info("control loops exited")
	return err
}

func startLeaderElection(ctx context.Context, g *errgroup.Group, o *options, factory *controller.ContextFactory, health *healthz.Server, elected chan struct{}) error {
	lectx, err := factory.Build("leader-election")
	if err != nil {
		return err
	}
	host, err := os.Hostname()
	if err != nil {
		return err
	}
	lock, err := resourcelock.New(resourcelock.LeasesResourceLock, o.leaderElectionNamespace, "cert-manager-controller",
		lectx.Client.CoreV1(), lectx.Client.CoordinationV1(),
		resourcelock.ResourceLockConfig{Identity: host + "-external-cert-manager-controller", EventRecorder: lectx.Recorder})
	if err != nil {
		return err
	}
	lost := make(chan struct{})
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock: lock, LeaseDuration: 60 * time.Second, RenewDeadline: 40 * time.Second, RetryPeriod: 15 * time.Second,
		ReleaseOnCancel: true, WatchDog: health.LeaderHealthzAdaptor,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(context.Context) { close(elected) },
			OnStoppedLeading: func() { close(lost) },
		},
	})
	if err != nil {
		return err
	}
	g.Go(func() error {
		le.Run(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-lost:
			return errors.New("leader election lost")
		}
	})
	return nil
}

func main() {
	logf.InitLogs()
	o, err := parseFlags(os.Args[1:])
	if errors.Is(err, pflag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(2)
	}
	if o.showVersion {
		fmt.Printf("cert-manager controller %s (acme-gateway test build)\n", util.AppVersion)
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx = logf.NewContext(ctx, logf.Log, "controller")
	logf.Log.Info("starting cert-manager controller", "version", util.AppVersion)
	err = run(ctx, o)
	logf.FlushLogs()
	if err != nil {
		logf.Log.Error(err, "controller exited with error")
		logf.FlushLogs()
		os.Exit(1)
	}
}

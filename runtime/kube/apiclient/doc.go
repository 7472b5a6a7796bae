// Package apiclient is podvisor's own small Kubernetes API client: a GET of
// one object as JSON, a JSON merge patch of one object, and a list+watch of
// one collection, configured from a kubeconfig file or from the pod's
// service account.
//
// It exists to keep client-go out of the daemon, which must stay under
// 64 MiB RSS with 500 VM pods. client-go, k8s.io/api and k8s.io/apimachinery
// made the podvisor binary 64 MB instead of 30 MB, and its RSS about 20 MiB
// larger idle and 14 MiB larger with 500 simulated VM pods (a Go binary's
// text is faulted in 64 KiB at a time and their init functions build
// schemes, so binary size shows up in RSS; docs/design.md has the
// figures), for two uses: GETs of ConfigMaps and Secrets named by
// cloud-init annotations, and a list+watch of VirtletImageMapping objects.
// This package must import nothing from k8s.io:
//
//	go list -deps ./runtime/kube/apiclient | grep ^k8s.io/   # prints nothing
//
// (TestDependencies checks this, and that the only other modules used are
// sigs.k8s.io/yaml, for kubeconfig files, and cenkalti/backoff.)
//
// What it deliberately does not do:
//   - credential plugins: a kubeconfig user with exec or auth-provider is an
//     error; use a token, a token file or a client certificate. Nor
//     impersonation (as, as-groups, ...) or a cluster's proxy-url, which are
//     errors too rather than silently ignored; nor merging several files
//     named in $KUBECONFIG.
//   - any encoding but JSON: no protobuf, no CBOR.
//   - any verb but GET and a merge PATCH (podvisor labels its own node with
//     its accelerator): no create, update, other patch types or delete.
//     Lists are not paginated (limit/continue), so a collection is read in
//     one response.
//   - typed objects, caches, indexers or shared informers: callers decode
//     the JSON into their own structs, and a Watcher hands the objects to
//     one Handler, which keeps what it needs.
package apiclient

// Package controllers reconciles the operator's resources: a RayoCluster
// into its token and TLS Secrets, head Service and the pods of its head and
// worker groups (made directly, as KubeRay does, so that the operator
// decides which worker goes on scale-down), and a RayoJob into a
// submission to its cluster's API server.
package controllers

import (
	"context"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/rayo-dev/rayo/deploy/operator/api/v1alpha1"
)

// ClusterFinalizer holds a deleted RayoCluster until its pods are gone
// (owner references alone would leave that to the garbage collector, and
// a pod's process may outlive a cascading delete's start).
const ClusterFinalizer = "rayo.io/cluster-cleanup"

// ClusterReconciler reconciles RayoClusters.
type ClusterReconciler struct {
	client.Client
	// Pods reads pods straight from the API server (the manager's
	// GetAPIReader), so that a reconcile never counts from a cache that
	// has not yet seen the pods the last one made, and makes more.
	Pods client.Reader
}

// SetupWithManager registers the reconciler with mgr, watching the
// clusters and the pods, Services and Secrets they own.
func (r *ClusterReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.RayoCluster{}).
		Owns(&corev1.Pod{}).
		Owns(&corev1.Service{}).
		Owns(&corev1.Secret{}).
		Named("rayocluster").
		Complete(r)
}

// Reconcile brings one RayoCluster's objects to its spec and its status
// to what they are.
func (r *ClusterReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var c v1alpha1.RayoCluster
	if err := r.Get(ctx, req.NamespacedName, &c); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !c.DeletionTimestamp.IsZero() {
		return r.finalize(ctx, &c)
	}
	if !controllerutil.ContainsFinalizer(&c, ClusterFinalizer) {
		controllerutil.AddFinalizer(&c, ClusterFinalizer)
		if err := r.Update(ctx, &c); err != nil {
			return ctrl.Result{}, fmt.Errorf("add the finalizer: %w", err)
		}
	}
	if err := r.ensureSecret(ctx, &c); err != nil {
		return ctrl.Result{}, err
	}
	if err := r.ensureTLSSecret(ctx, &c); err != nil {
		return ctrl.Result{}, err
	}
	if err := r.ensureCreated(ctx, headService(&c)); err != nil {
		return ctrl.Result{}, fmt.Errorf("head service: %w", err)
	}
	if err := r.ensureAutoscalerRBAC(ctx, &c); err != nil {
		return ctrl.Result{}, err
	}
	pods, err := r.pods(ctx, &c)
	if err != nil {
		return ctrl.Result{}, err
	}
	if err := r.reconcileGroup(ctx, &c, HeadGroup, 1, nil, c.Spec.Head, pods[HeadGroup]); err != nil {
		return ctrl.Result{}, err
	}
	groups := map[string]bool{HeadGroup: true}
	for _, g := range c.Spec.WorkerGroups {
		groups[g.Name] = true
		if err := r.reconcileGroup(ctx, &c, g.Name, int(g.Replicas), g.WorkersToDelete, g.NodeSpec, pods[g.Name]); err != nil {
			return ctrl.Result{}, err
		}
	}
	for group, list := range pods {
		if groups[group] {
			continue
		}
		for i := range list { // a group no longer in the spec
			if err := r.deletePod(ctx, &list[i]); err != nil {
				return ctrl.Result{}, err
			}
		}
	}
	if err := r.clearWorkersToDelete(ctx, &c); err != nil {
		return ctrl.Result{}, err
	}
	return ctrl.Result{}, r.updateStatus(ctx, req.NamespacedName)
}

// pods lists the cluster's pods that are not being deleted, by group.
func (r *ClusterReconciler) pods(ctx context.Context, c *v1alpha1.RayoCluster) (map[string][]corev1.Pod, error) {
	var list corev1.PodList
	if err := r.Pods.List(ctx, &list, client.InNamespace(c.Namespace), client.MatchingLabels{LabelCluster: c.Name}); err != nil {
		return nil, fmt.Errorf("list the cluster's pods: %w", err)
	}
	out := map[string][]corev1.Pod{}
	for _, p := range list.Items {
		if p.DeletionTimestamp.IsZero() {
			out[p.Labels[LabelGroup]] = append(out[p.Labels[LabelGroup]], p)
		}
	}
	return out, nil
}

// reconcileGroup makes a group's pods number want: it deletes the pods
// named in toDelete and those that ended, then the surplus (not ready
// first, then newest), then creates the missing. With autoscaling on, a
// worker pod that ended (its node drained, or failed) stays, counted,
// until the autoscaler names it in toDelete: the autoscaler decides
// whether it is replaced, and a drained node's pod is not replaced in
// the moment between its exit and the autoscaler lowering the replicas.
func (r *ClusterReconciler) reconcileGroup(ctx context.Context, c *v1alpha1.RayoCluster, group string, want int, toDelete []string, spec v1alpha1.NodeSpec, pods []corev1.Pod) error {
	autoscaled := c.Spec.Autoscaling && group != HeadGroup
	var keep []corev1.Pod
	for i := range pods {
		if slices.Contains(toDelete, pods[i].Name) || (podDone(&pods[i]) && !autoscaled) {
			if err := r.deletePod(ctx, &pods[i]); err != nil {
				return err
			}
			continue
		}
		keep = append(keep, pods[i])
	}
	if len(keep) > want {
		scaleDownOrder(keep)
		for i := range keep[:len(keep)-want] {
			if err := r.deletePod(ctx, &keep[i]); err != nil {
				return err
			}
		}
		return nil
	}
	for n := len(keep); n < want; n++ {
		name := HeadName(c.Name)
		if group != HeadGroup {
			name = fmt.Sprintf("%s-%s-%s", c.Name, group, randomSuffix(5))
		}
		pod, err := nodePod(c, group, name, spec)
		if err != nil {
			return fmt.Errorf("group %s: %w", group, err)
		}
		if err := r.Create(ctx, pod); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create pod %s: %w", name, err)
		}
	}
	return nil
}

// deletePod deletes p, which may already be gone.
func (r *ClusterReconciler) deletePod(ctx context.Context, p *corev1.Pod) error {
	if err := r.Delete(ctx, p); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete pod %s: %w", p.Name, err)
	}
	return nil
}

// clearWorkersToDelete empties the groups' WorkersToDelete once their
// pods are deleted, as KubeRay does, so that a later pod of the same
// name is not taken for one to delete. The update carries the version
// read, so a provider's newer request is not lost: it conflicts and the
// reconcile runs again.
func (r *ClusterReconciler) clearWorkersToDelete(ctx context.Context, c *v1alpha1.RayoCluster) error {
	changed := false
	for i := range c.Spec.WorkerGroups {
		if len(c.Spec.WorkerGroups[i].WorkersToDelete) > 0 {
			c.Spec.WorkerGroups[i].WorkersToDelete = nil
			changed = true
		}
	}
	if !changed {
		return nil
	}
	if err := r.Update(ctx, c); err != nil {
		return fmt.Errorf("clear workersToDelete: %w", err)
	}
	return nil
}

// ensureSecret creates the cluster's token Secret if it is missing.
func (r *ClusterReconciler) ensureSecret(ctx context.Context, c *v1alpha1.RayoCluster) error {
	var s corev1.Secret
	err := r.Get(ctx, types.NamespacedName{Namespace: c.Namespace, Name: TokenSecretName(c.Name)}, &s)
	if err == nil || !apierrors.IsNotFound(err) {
		return err
	}
	token, err := newToken()
	if err != nil {
		return err
	}
	if err := r.ensureCreated(ctx, tokenSecret(c, token)); err != nil {
		return fmt.Errorf("token secret: %w", err)
	}
	return nil
}

// ensureTLSSecret mints the cluster's CA into its TLS Secret if the
// Secret is missing: once, since a Secret that exists is never replaced
// (a second reconcile that has not seen it yet loses the create), and the
// nodes' certificates and pins stay good for the cluster's life.
func (r *ClusterReconciler) ensureTLSSecret(ctx context.Context, c *v1alpha1.RayoCluster) error {
	var s corev1.Secret
	err := r.Get(ctx, types.NamespacedName{Namespace: c.Namespace, Name: TLSSecretName(c.Name)}, &s)
	if err == nil || !apierrors.IsNotFound(err) {
		return err
	}
	certPEM, keyPEM, err := newCA(c)
	if err != nil {
		return fmt.Errorf("the cluster's CA: %w", err)
	}
	if err := r.ensureCreated(ctx, tlsSecret(c, certPEM, keyPEM)); err != nil {
		return fmt.Errorf("TLS secret: %w", err)
	}
	return nil
}

// ensureCreated creates obj unless it exists.
func (r *ClusterReconciler) ensureCreated(ctx context.Context, obj client.Object) error {
	if err := r.Create(ctx, obj); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	return nil
}

// ensureAutoscalerRBAC gives the head's service account (made whether
// or not autoscaling is on, so that turning it on needs no new pod) what
// the kubernetes provider needs: reading and patching its RayoCluster and
// listing its pods.
func (r *ClusterReconciler) ensureAutoscalerRBAC(ctx context.Context, c *v1alpha1.RayoCluster) error {
	name := HeadName(c.Name)
	meta := metav1.ObjectMeta{Name: name, Namespace: c.Namespace, Labels: map[string]string{LabelCluster: c.Name},
		OwnerReferences: []metav1.OwnerReference{ownerRef(c)}}
	objs := []client.Object{
		&corev1.ServiceAccount{ObjectMeta: meta},
		&rbacv1.Role{ObjectMeta: meta, Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{v1alpha1.GroupVersion.Group}, Resources: []string{"rayoclusters"},
				ResourceNames: []string{c.Name}, Verbs: []string{"get", "patch"}},
			{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list"}},
		}},
		&rbacv1.RoleBinding{ObjectMeta: meta,
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: name, Namespace: c.Namespace}}},
	}
	for _, o := range objs {
		if err := r.ensureCreated(ctx, o); err != nil {
			return fmt.Errorf("autoscaler's %T: %w", o, err)
		}
	}
	return nil
}

// updateStatus records the cluster's pods' readiness in its status.
func (r *ClusterReconciler) updateStatus(ctx context.Context, key types.NamespacedName) error {
	var c v1alpha1.RayoCluster
	if err := r.Get(ctx, key, &c); err != nil {
		return client.IgnoreNotFound(err)
	}
	pods, err := r.pods(ctx, &c)
	if err != nil {
		return err
	}
	st := v1alpha1.RayoClusterStatus{DesiredNodes: 1, Address: fmt.Sprintf("%s.%s.svc:%d", HeadName(c.Name), c.Namespace, PortControlStore),
		DashboardURL: DashboardURL(&c), ObservedGeneration: c.Generation}
	for _, g := range c.Spec.WorkerGroups {
		st.DesiredNodes += g.Replicas
	}
	for group, list := range pods {
		for i := range list {
			if podReady(&list[i]) {
				st.ReadyNodes++
				if group == HeadGroup {
					st.HeadReady = true
				}
			}
		}
	}
	st.State = v1alpha1.ClusterPending
	if st.HeadReady && st.ReadyNodes >= st.DesiredNodes {
		st.State = v1alpha1.ClusterReady
	}
	if st == c.Status {
		return nil
	}
	c.Status = st
	if err := r.Status().Update(ctx, &c); err != nil {
		if apierrors.IsConflict(err) {
			return nil // a newer version is queued for reconciling
		}
		return fmt.Errorf("update the status: %w", err)
	}
	return nil
}

// finalize deletes a deleted cluster's pods and lets it go once they are
// gone.
func (r *ClusterReconciler) finalize(ctx context.Context, c *v1alpha1.RayoCluster) (ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(c, ClusterFinalizer) {
		return ctrl.Result{}, nil
	}
	var list corev1.PodList
	if err := r.Pods.List(ctx, &list, client.InNamespace(c.Namespace), client.MatchingLabels{LabelCluster: c.Name}); err != nil {
		return ctrl.Result{}, fmt.Errorf("list the cluster's pods: %w", err)
	}
	for i := range list.Items {
		if list.Items[i].DeletionTimestamp.IsZero() {
			if err := r.deletePod(ctx, &list.Items[i]); err != nil {
				return ctrl.Result{}, err
			}
		}
	}
	if len(list.Items) > 0 {
		// The kubelet ends the pods' processes, then they go; their
		// deletion events requeue the cluster, and so does this.
		return ctrl.Result{RequeueAfter: 2 * time.Second}, nil
	}
	for _, o := range []client.Object{
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: HeadName(c.Name), Namespace: c.Namespace}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: TokenSecretName(c.Name), Namespace: c.Namespace}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: TLSSecretName(c.Name), Namespace: c.Namespace}},
	} {
		if err := r.Delete(ctx, o); err != nil && !apierrors.IsNotFound(err) {
			return ctrl.Result{}, fmt.Errorf("delete %s: %w", o.GetName(), err)
		}
	}
	controllerutil.RemoveFinalizer(c, ClusterFinalizer)
	if err := r.Update(ctx, c); err != nil {
		return ctrl.Result{}, fmt.Errorf("remove the finalizer: %w", err)
	}
	return ctrl.Result{}, nil
}

// Setup registers both reconcilers with mgr. dashboard, when not nil,
// maps a cluster to its API server's URL (see JobReconciler.Dashboard).
func Setup(mgr ctrl.Manager, dashboard func(ctx context.Context, c *v1alpha1.RayoCluster) (string, error)) error {
	if err := (&ClusterReconciler{Client: mgr.GetClient(), Pods: mgr.GetAPIReader()}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("RayoCluster controller: %w", err)
	}
	if err := (&JobReconciler{Client: mgr.GetClient(), Dashboard: dashboard}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("RayoJob controller: %w", err)
	}
	return nil
}

// NewScheme is Kubernetes' built-in types and the operator's.
func NewScheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		return nil, fmt.Errorf("scheme: %w", err)
	}
	if err := v1alpha1.AddToScheme(s); err != nil {
		return nil, fmt.Errorf("scheme: %w", err)
	}
	return s, nil
}

package controllers

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/rayo-dev/rayo/deploy/operator/api/v1alpha1"
	"github.com/rayo-dev/rayo/internal/jobs"
	"github.com/rayo-dev/rayo/internal/stateapi"
)

// JobFinalizer holds a deleted RayoJob until the cluster made for it is
// deleted.
const JobFinalizer = "rayo.io/job-cleanup"

// jobPoll is how often a running job's status is read from its cluster.
const jobPoll = 2 * time.Second

// JobReconciler reconciles RayoJobs: it makes the job's cluster when the
// job describes one, waits for it to be ready, submits the entrypoint to
// its API server and records the submission's outcome.
type JobReconciler struct {
	client.Client
	// Dashboard returns the URL of a cluster's API server; nil uses its
	// status's DashboardURL (the head Service's name in cluster DNS).
	// Tests without cluster DNS map it to where the head listens.
	Dashboard func(ctx context.Context, c *v1alpha1.RayoCluster) (string, error)
	// HTTP sends the requests to the API server; nil is a client with a
	// 30 s timeout.
	HTTP *http.Client
}

// SetupWithManager registers the reconciler with mgr, watching the jobs
// and the clusters they own.
func (r *JobReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.RayoJob{}).
		Owns(&v1alpha1.RayoCluster{}).
		Named("rayojob").
		Complete(r)
}

// clusterName is the RayoCluster the job runs on.
func clusterName(j *v1alpha1.RayoJob) string {
	if j.Spec.ClusterRef != "" {
		return j.Spec.ClusterRef
	}
	return j.Name
}

// submissionID is the job's ID on its cluster: fixed by the job's UID, so
// that a submission repeated after a lost status update is refused as a
// duplicate rather than run twice.
func submissionID(j *v1alpha1.RayoJob) string {
	return "rayojob-" + j.Name + "-" + string(j.UID)[:8]
}

// Reconcile advances one RayoJob.
func (r *JobReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var j v1alpha1.RayoJob
	if err := r.Get(ctx, req.NamespacedName, &j); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !j.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, r.finalize(ctx, &j)
	}
	if (j.Spec.ClusterRef == "") == (j.Spec.Cluster == nil) {
		return ctrl.Result{}, r.setStatus(ctx, &j, v1alpha1.JobFailed, "give exactly one of spec.clusterRef and spec.cluster")
	}
	if jobs.Final(j.Status.JobStatus) {
		return ctrl.Result{}, nil
	}
	if j.Spec.Cluster != nil {
		if !controllerutil.ContainsFinalizer(&j, JobFinalizer) {
			controllerutil.AddFinalizer(&j, JobFinalizer)
			if err := r.Update(ctx, &j); err != nil {
				return ctrl.Result{}, fmt.Errorf("add the finalizer: %w", err)
			}
		}
		if err := r.ensureCluster(ctx, &j); err != nil {
			return ctrl.Result{}, err
		}
	}
	var c v1alpha1.RayoCluster
	if err := r.Get(ctx, types.NamespacedName{Namespace: j.Namespace, Name: clusterName(&j)}, &c); err != nil {
		if apierrors.IsNotFound(err) {
			return ctrl.Result{RequeueAfter: jobPoll}, r.setStatus(ctx, &j, v1alpha1.JobPending, fmt.Sprintf("waiting for RayoCluster %s, which does not exist", clusterName(&j)))
		}
		return ctrl.Result{}, fmt.Errorf("get the cluster: %w", err)
	}
	if j.Status.SubmissionID == "" && c.Status.State != v1alpha1.ClusterReady {
		return ctrl.Result{RequeueAfter: jobPoll}, r.setStatus(ctx, &j, v1alpha1.JobPending, fmt.Sprintf("waiting for RayoCluster %s to be ready", c.Name))
	}
	api, err := r.apiClient(ctx, &c)
	if err != nil {
		return ctrl.Result{}, err
	}
	if j.Status.SubmissionID == "" {
		if err := r.submit(ctx, api, &j); err != nil {
			return ctrl.Result{}, err
		}
		now := metav1.Now()
		j.Status.SubmissionID = submissionID(&j)
		j.Status.ClusterName = c.Name
		j.Status.StartTime = &now
		return ctrl.Result{RequeueAfter: jobPoll}, r.setStatus(ctx, &j, v1alpha1.JobRunning, "submitted")
	}
	info, err := r.info(ctx, api, j.Status.SubmissionID)
	if err != nil {
		return ctrl.Result{}, err
	}
	msg := info.Message
	if !jobs.Final(info.Status) {
		return ctrl.Result{RequeueAfter: jobPoll}, r.setStatus(ctx, &j, v1alpha1.JobRunning, msg)
	}
	if info.Status == jobs.StatusFailed && info.ExitCode != nil && !strings.Contains(msg, "exit") {
		msg = strings.TrimSpace(fmt.Sprintf("%s (exit code %d)", msg, *info.ExitCode))
	}
	now := metav1.Now()
	j.Status.EndTime = &now
	return ctrl.Result{}, r.setStatus(ctx, &j, info.Status, msg)
}

// ensureCluster creates the cluster the job describes, owned by the job.
func (r *JobReconciler) ensureCluster(ctx context.Context, j *v1alpha1.RayoJob) error {
	yes := true
	c := &v1alpha1.RayoCluster{
		ObjectMeta: metav1.ObjectMeta{Name: j.Name, Namespace: j.Namespace,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: v1alpha1.GroupVersion.String(), Kind: "RayoJob",
				Name: j.Name, UID: j.UID, Controller: &yes, BlockOwnerDeletion: &yes}}},
		Spec: *j.Spec.Cluster.DeepCopy(),
	}
	if err := r.Create(ctx, c); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create the job's cluster: %w", err)
	}
	return nil
}

// finalize deletes the cluster made for a deleted job.
func (r *JobReconciler) finalize(ctx context.Context, j *v1alpha1.RayoJob) error {
	if !controllerutil.ContainsFinalizer(j, JobFinalizer) {
		return nil
	}
	c := &v1alpha1.RayoCluster{ObjectMeta: metav1.ObjectMeta{Name: j.Name, Namespace: j.Namespace}}
	if err := r.Delete(ctx, c); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete the job's cluster: %w", err)
	}
	controllerutil.RemoveFinalizer(j, JobFinalizer)
	if err := r.Update(ctx, j); err != nil {
		return fmt.Errorf("remove the finalizer: %w", err)
	}
	return nil
}

// setStatus records the job's status and message if they changed.
func (r *JobReconciler) setStatus(ctx context.Context, j *v1alpha1.RayoJob, status, msg string) error {
	var cur v1alpha1.RayoJob
	if err := r.Get(ctx, client.ObjectKeyFromObject(j), &cur); err != nil {
		return client.IgnoreNotFound(err)
	}
	next := j.Status
	next.JobStatus, next.Message = status, msg
	if cur.Status.JobStatus == next.JobStatus && cur.Status.Message == next.Message && cur.Status.SubmissionID == next.SubmissionID {
		return nil
	}
	j.Status = next
	if err := r.Status().Update(ctx, j); err != nil {
		return fmt.Errorf("update the job's status: %w", err)
	}
	return nil
}

// apiClient returns a client of c's API server with its token.
func (r *JobReconciler) apiClient(ctx context.Context, c *v1alpha1.RayoCluster) (*stateapi.Client, error) {
	addr := c.Status.DashboardURL
	if r.Dashboard != nil {
		var err error
		if addr, err = r.Dashboard(ctx, c); err != nil {
			return nil, fmt.Errorf("the API server of %s: %w", c.Name, err)
		}
	}
	api, err := stateapi.New(addr)
	if err != nil {
		return nil, err
	}
	var s corev1.Secret
	if err := r.Get(ctx, types.NamespacedName{Namespace: c.Namespace, Name: TokenSecretName(c.Name)}, &s); err != nil {
		return nil, fmt.Errorf("the token of %s: %w", c.Name, err)
	}
	api.Token = strings.TrimSpace(string(s.Data["token"]))
	api.HTTP = r.HTTP
	if api.HTTP == nil {
		api.HTTP = &http.Client{Timeout: 30 * time.Second}
		if strings.HasPrefix(api.Base, "https://") {
			// The head's certificate is of the cluster's CA, which the
			// operator minted: its chain is checked against it (not
			// the host name, which the certificate does not carry).
			if err := r.trustClusterCA(ctx, c, api); err != nil {
				return nil, err
			}
		}
	}
	return api, nil
}

// trustClusterCA makes api check the API server's certificate against c's
// CA, from its TLS Secret.
func (r *JobReconciler) trustClusterCA(ctx context.Context, c *v1alpha1.RayoCluster, api *stateapi.Client) error {
	var s corev1.Secret
	if err := r.Get(ctx, types.NamespacedName{Namespace: c.Namespace, Name: TLSSecretName(c.Name)}, &s); err != nil {
		return fmt.Errorf("the CA of %s: %w", c.Name, err)
	}
	if err := api.TrustCA(s.Data[CACertKey]); err != nil {
		return fmt.Errorf("the CA of %s: %w", c.Name, err)
	}
	api.HTTP.Timeout = 30 * time.Second
	return nil
}

// submit posts the job's entrypoint to the cluster; a submission already
// made (its ID taken) counts as made.
func (r *JobReconciler) submit(ctx context.Context, api *stateapi.Client, j *v1alpha1.RayoJob) error {
	body, err := json.Marshal(map[string]any{"entrypoint": j.Spec.Entrypoint, "submission_id": submissionID(j),
		"env": j.Spec.Env, "metadata": map[string]string{"rayojob": j.Namespace + "/" + j.Name}})
	if err != nil {
		return fmt.Errorf("submission: %w", err)
	}
	resp, err := api.Send(ctx, http.MethodPost, "/api/jobs/", nil, bytes.NewReader(body), "application/json")
	if err != nil {
		if _, ierr := r.info(ctx, api, submissionID(j)); ierr == nil {
			return nil // submitted before, its status update lost
		}
		return fmt.Errorf("submit %s: %w", j.Name, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.Body.Close()
}

// info reads a submission's state from the cluster.
func (r *JobReconciler) info(ctx context.Context, api *stateapi.Client, id string) (jobs.Info, error) {
	resp, err := api.Open(ctx, "/api/jobs/"+url.PathEscape(id), nil)
	if err != nil {
		return jobs.Info{}, fmt.Errorf("job %s: %w", id, err)
	}
	defer resp.Body.Close()
	var info jobs.Info
	if err := json.NewDecoder(resp.Body).Decode(&info); err != nil {
		return jobs.Info{}, fmt.Errorf("job %s: the API server's answer: %w", id, err)
	}
	if info.Status == "" {
		return jobs.Info{}, errors.New("job " + id + ": the API server's answer has no status")
	}
	return info, nil
}

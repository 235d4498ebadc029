package controllers_test

import (
	"context"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/rayo-dev/rayo/deploy/operator/api/v1alpha1"
)

// waitJob waits for a job to end and returns it.
func waitJob(t *testing.T, ctx context.Context, name string) *v1alpha1.RayoJob {
	t.Helper()
	var j v1alpha1.RayoJob
	waitFor(t, 4*time.Minute, "RayoJob "+name+" ending", func() (bool, error) {
		if err := suite.client.Get(ctx, client.ObjectKey{Namespace: testNS, Name: name}, &j); err != nil {
			return false, err
		}
		s := j.Status.JobStatus
		return s == v1alpha1.JobSucceeded || s == v1alpha1.JobFailed || s == v1alpha1.JobStopped, nil
	})
	return &j
}

// A RayoJob with its own cluster runs an example program (sumsquares,
// whose tasks run on the cluster's nodes) to SUCCEEDED; a second job
// naming that cluster fails and says how; deleting the first job
// deletes the cluster made for it.
func TestRayoJob(t *testing.T) {
	needEnvtest(t)
	ctx := context.Background()
	prog, err := buildProgram("./examples/sumsquares", "sumsquares")
	if err != nil {
		t.Fatal(err)
	}
	spec := newCluster("unused", 1, 2).Spec
	ok := &v1alpha1.RayoJob{ObjectMeta: metav1.ObjectMeta{Name: "sums", Namespace: testNS},
		Spec: v1alpha1.RayoJobSpec{Entrypoint: prog, Cluster: &spec}}
	if err := suite.client.Create(ctx, ok); err != nil {
		t.Fatalf("create: %v", err)
	}
	j := waitJob(t, ctx, "sums")
	if j.Status.JobStatus != v1alpha1.JobSucceeded || j.Status.ClusterName != "sums" || j.Status.SubmissionID == "" ||
		j.Status.StartTime == nil || j.Status.EndTime == nil {
		t.Fatalf("job status = %+v, want SUCCEEDED on cluster sums", j.Status)
	}
	c, err := getCluster(ctx, "sums")
	if err != nil {
		t.Fatalf("the job's cluster: %v", err)
	}
	if len(c.OwnerReferences) != 1 || c.OwnerReferences[0].UID != j.UID {
		t.Errorf("the job's cluster's owners = %+v, want the job", c.OwnerReferences)
	}

	bad := &v1alpha1.RayoJob{ObjectMeta: metav1.ObjectMeta{Name: "boom", Namespace: testNS},
		Spec: v1alpha1.RayoJobSpec{Entrypoint: "echo the data is missing >&2; exit 3", ClusterRef: "sums"}}
	if err := suite.client.Create(ctx, bad); err != nil {
		t.Fatalf("create: %v", err)
	}
	j = waitJob(t, ctx, "boom")
	if j.Status.JobStatus != v1alpha1.JobFailed || !strings.Contains(j.Status.Message, "3") {
		t.Errorf("failing job status = %+v, want FAILED naming exit code 3", j.Status)
	}

	if err := suite.client.Delete(ctx, ok); err != nil {
		t.Fatal(err)
	}
	waitGone(t, ctx, "sums")
	if err := client.IgnoreNotFound(suite.client.Delete(ctx, bad)); err != nil {
		t.Fatal(err)
	}
}

// The API server refuses a RayoJob that names no cluster, or two.
func TestRayoJobValidation(t *testing.T) {
	needEnvtest(t)
	ctx := context.Background()
	spec := newCluster("unused", 1, 2).Spec
	for name, s := range map[string]v1alpha1.RayoJobSpec{
		"neither": {Entrypoint: "true"},
		"both":    {Entrypoint: "true", ClusterRef: "x", Cluster: &spec},
		"empty":   {ClusterRef: "x"},
	} {
		j := &v1alpha1.RayoJob{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: testNS}, Spec: s}
		if err := suite.client.Create(ctx, j); !apierrors.IsInvalid(err) {
			t.Errorf("%s: create = %v, want invalid", name, err)
			_ = suite.client.Delete(ctx, j)
		}
	}
}

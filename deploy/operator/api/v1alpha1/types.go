// Package v1alpha1 holds the operator's resources, group rayo.io version
// v1alpha1: RayoCluster (a head and worker groups of rayo nodes, run as
// pods) and RayoJob (an entrypoint submitted to a cluster, with its
// outcome), the analogues of KubeRay's RayCluster and RayJob.
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// GroupVersion is the resources' API group and version.
var GroupVersion = schema.GroupVersion{Group: "rayo.io", Version: "v1alpha1"}

// AddToScheme registers the resources' Go types with a scheme.
func AddToScheme(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion, &RayoCluster{}, &RayoClusterList{}, &RayoJob{}, &RayoJobList{})
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}

// NodeSpec is what one rayo node's pod is given: its image, CPUs, memory
// (the object store's share of it included: the store is a memfd charged
// to the container), and custom resources.
type NodeSpec struct {
	// Image is the container image running rayo (default rayo:latest).
	Image string `json:"image,omitempty"`
	// CPU is the CPUs the node offers, also its pod's request and limit.
	CPU int32 `json:"cpu"`
	// MemoryMiB is the pod's memory request and limit in MiB.
	MemoryMiB int32 `json:"memoryMiB"`
	// ObjectStorePercent is the share (1-90) of MemoryMiB the object
	// store takes (default 30).
	ObjectStorePercent int32 `json:"objectStorePercent,omitempty"`
	// Resources are custom resources the node offers.
	Resources map[string]float64 `json:"resources,omitempty"`
}

// WorkerGroup is a set of identical worker nodes whose count the
// autoscaler (or the user) sets through Replicas, within Min and Max.
type WorkerGroup struct {
	// Name names the group (lower-case letters, digits and dashes); it
	// is the node type the autoscaler knows the group's nodes by.
	Name     string `json:"name"`
	NodeSpec `json:",inline"`
	// MinReplicas is the fewest nodes the autoscaler keeps in the group
	// (Replicas may be below it for a moment, while the autoscaler
	// replaces a node that left).
	MinReplicas int32 `json:"minReplicas"`
	// MaxReplicas is the most nodes the group may have.
	MaxReplicas int32 `json:"maxReplicas"`
	// Replicas is how many nodes the group should have now.
	Replicas int32 `json:"replicas"`
	// WorkersToDelete names the group's pods to remove first when
	// Replicas goes down (the autoscaler names the nodes it drained).
	WorkersToDelete []string `json:"workersToDelete,omitempty"`
}

// RayoClusterSpec is the cluster asked for.
type RayoClusterSpec struct {
	// Head is the head node's pod: control store, API server, raylet.
	Head NodeSpec `json:"head"`
	// WorkerGroups are the worker nodes' groups.
	WorkerGroups []WorkerGroup `json:"workerGroups,omitempty"`
	// Autoscaling, when true, runs the head's autoscaler with the
	// kubernetes provider, which sets the worker groups' Replicas.
	Autoscaling bool `json:"autoscaling,omitempty"`
	// IdleTimeoutSeconds is, with Autoscaling, how long a worker above
	// its group's MinReplicas stays idle before the autoscaler drains it
	// and removes its pod (0: the head's default, 60 s).
	IdleTimeoutSeconds int32 `json:"idleTimeoutSeconds,omitempty"`
}

// Cluster states, as RayoClusterStatus.State gives them.
const (
	// ClusterPending: some of its pods are not ready yet.
	ClusterPending = "Pending"
	// ClusterReady: the head and every wanted worker are ready.
	ClusterReady = "Ready"
)

// RayoClusterStatus is the cluster as the operator last saw it.
type RayoClusterStatus struct {
	// State is Pending or Ready.
	State string `json:"state,omitempty"`
	// ReadyNodes counts the cluster's ready pods, the head included.
	ReadyNodes int32 `json:"readyNodes"`
	// DesiredNodes is the head plus every group's Replicas.
	DesiredNodes int32 `json:"desiredNodes"`
	// HeadReady says whether the head pod is ready.
	HeadReady bool `json:"headReady"`
	// Address is the cluster's address (the head Service's control
	// store), which nodes and drivers join by.
	Address string `json:"address,omitempty"`
	// DashboardURL is the head's API server (dashboard, state API, jobs).
	DashboardURL string `json:"dashboardURL,omitempty"`
	// ObservedGeneration is the spec generation this status is of.
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
}

// RayoCluster is a rayo cluster run as pods: one head and worker groups.
type RayoCluster struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   RayoClusterSpec   `json:"spec,omitempty"`
	Status RayoClusterStatus `json:"status,omitempty"`
}

// RayoClusterList is a list of RayoClusters.
type RayoClusterList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []RayoCluster `json:"items"`
}

// RayoJobSpec is the job asked for: an entrypoint, and the cluster to run
// it on, named or described (then made for the job and owned by it).
type RayoJobSpec struct {
	// Entrypoint is the shell command run on the head as the job's
	// driver (rayo job submit's ENTRYPOINT).
	Entrypoint string `json:"entrypoint"`
	// Env is added to the entrypoint's environment.
	Env map[string]string `json:"env,omitempty"`
	// ClusterRef names a RayoCluster in the job's namespace to run on.
	ClusterRef string `json:"clusterRef,omitempty"`
	// Cluster describes a cluster made for the job, named after it and
	// deleted with it. Exactly one of ClusterRef and Cluster is given.
	Cluster *RayoClusterSpec `json:"cluster,omitempty"`
}

// Job states, as RayoJobStatus.JobStatus gives them (the first three as
// the cluster's job API names them).
const (
	JobPending   = "PENDING"
	JobRunning   = "RUNNING"
	JobSucceeded = "SUCCEEDED"
	JobFailed    = "FAILED"
	JobStopped   = "STOPPED"
)

// RayoJobStatus is the job's outcome so far.
type RayoJobStatus struct {
	// JobStatus is PENDING, RUNNING, SUCCEEDED, FAILED or STOPPED.
	JobStatus string `json:"jobStatus,omitempty"`
	// Message says why the job is where it is (a failure's cause).
	Message string `json:"message,omitempty"`
	// SubmissionID is the job's ID on the cluster.
	SubmissionID string `json:"submissionID,omitempty"`
	// ClusterName is the RayoCluster the job runs on.
	ClusterName string `json:"clusterName,omitempty"`
	// StartTime and EndTime bound the job's run.
	StartTime *metav1.Time `json:"startTime,omitempty"`
	EndTime   *metav1.Time `json:"endTime,omitempty"`
}

// RayoJob submits an entrypoint to a RayoCluster and records its outcome.
type RayoJob struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   RayoJobSpec   `json:"spec,omitempty"`
	Status RayoJobStatus `json:"status,omitempty"`
}

// RayoJobList is a list of RayoJobs.
type RayoJobList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []RayoJob `json:"items"`
}

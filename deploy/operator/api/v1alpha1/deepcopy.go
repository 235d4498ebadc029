package v1alpha1

import (
	"maps"
	"slices"

	"k8s.io/apimachinery/pkg/runtime"
)

// The deep copies, written by hand (the types are few and small, which
// spares the build a code generator).

// DeepCopyInto copies s into out.
func (s *NodeSpec) DeepCopyInto(out *NodeSpec) {
	*out = *s
	out.Resources = maps.Clone(s.Resources)
}

// DeepCopyInto copies g into out.
func (g *WorkerGroup) DeepCopyInto(out *WorkerGroup) {
	*out = *g
	g.NodeSpec.DeepCopyInto(&out.NodeSpec)
	out.WorkersToDelete = slices.Clone(g.WorkersToDelete)
}

// DeepCopyInto copies s into out.
func (s *RayoClusterSpec) DeepCopyInto(out *RayoClusterSpec) {
	*out = *s
	s.Head.DeepCopyInto(&out.Head)
	if s.WorkerGroups != nil {
		out.WorkerGroups = make([]WorkerGroup, len(s.WorkerGroups))
		for i := range s.WorkerGroups {
			s.WorkerGroups[i].DeepCopyInto(&out.WorkerGroups[i])
		}
	}
}

// DeepCopyInto copies c into out.
func (c *RayoCluster) DeepCopyInto(out *RayoCluster) {
	*out = *c
	out.TypeMeta = c.TypeMeta
	c.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	c.Spec.DeepCopyInto(&out.Spec)
	out.Status = c.Status
}

// DeepCopy returns a copy of c.
func (c *RayoCluster) DeepCopy() *RayoCluster {
	if c == nil {
		return nil
	}
	out := new(RayoCluster)
	c.DeepCopyInto(out)
	return out
}

// DeepCopyObject returns a copy of c.
func (c *RayoCluster) DeepCopyObject() runtime.Object { return c.DeepCopy() }

// DeepCopyInto copies l into out.
func (l *RayoClusterList) DeepCopyInto(out *RayoClusterList) {
	*out = *l
	l.ListMeta.DeepCopyInto(&out.ListMeta)
	if l.Items != nil {
		out.Items = make([]RayoCluster, len(l.Items))
		for i := range l.Items {
			l.Items[i].DeepCopyInto(&out.Items[i])
		}
	}
}

// DeepCopy returns a copy of l.
func (l *RayoClusterList) DeepCopy() *RayoClusterList {
	if l == nil {
		return nil
	}
	out := new(RayoClusterList)
	l.DeepCopyInto(out)
	return out
}

// DeepCopyObject returns a copy of l.
func (l *RayoClusterList) DeepCopyObject() runtime.Object { return l.DeepCopy() }

// DeepCopyInto copies s into out.
func (s *RayoJobSpec) DeepCopyInto(out *RayoJobSpec) {
	*out = *s
	out.Env = maps.Clone(s.Env)
	if s.Cluster != nil {
		out.Cluster = new(RayoClusterSpec)
		s.Cluster.DeepCopyInto(out.Cluster)
	}
}

// DeepCopyInto copies s into out.
func (s *RayoJobStatus) DeepCopyInto(out *RayoJobStatus) {
	*out = *s
	if s.StartTime != nil {
		out.StartTime = s.StartTime.DeepCopy()
	}
	if s.EndTime != nil {
		out.EndTime = s.EndTime.DeepCopy()
	}
}

// DeepCopyInto copies j into out.
func (j *RayoJob) DeepCopyInto(out *RayoJob) {
	*out = *j
	j.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	j.Spec.DeepCopyInto(&out.Spec)
	j.Status.DeepCopyInto(&out.Status)
}

// DeepCopy returns a copy of j.
func (j *RayoJob) DeepCopy() *RayoJob {
	if j == nil {
		return nil
	}
	out := new(RayoJob)
	j.DeepCopyInto(out)
	return out
}

// DeepCopyObject returns a copy of j.
func (j *RayoJob) DeepCopyObject() runtime.Object { return j.DeepCopy() }

// DeepCopyInto copies l into out.
func (l *RayoJobList) DeepCopyInto(out *RayoJobList) {
	*out = *l
	l.ListMeta.DeepCopyInto(&out.ListMeta)
	if l.Items != nil {
		out.Items = make([]RayoJob, len(l.Items))
		for i := range l.Items {
			l.Items[i].DeepCopyInto(&out.Items[i])
		}
	}
}

// DeepCopy returns a copy of l.
func (l *RayoJobList) DeepCopy() *RayoJobList {
	if l == nil {
		return nil
	}
	out := new(RayoJobList)
	l.DeepCopyInto(out)
	return out
}

// DeepCopyObject returns a copy of l.
func (l *RayoJobList) DeepCopyObject() runtime.Object { return l.DeepCopy() }

// DeepCopy returns a copy of s.
func (s *RayoClusterSpec) DeepCopy() *RayoClusterSpec {
	if s == nil {
		return nil
	}
	out := new(RayoClusterSpec)
	s.DeepCopyInto(out)
	return out
}

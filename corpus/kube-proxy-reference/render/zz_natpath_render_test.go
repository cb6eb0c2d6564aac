/*
Scratch test (not part of Kubernetes): render kube-proxy v1.28.7's own
iptables restore input for the Services of a natpath Services file
(kube-proxy reference format), once per node.

	KP_SERVICES=services.json KP_OUT=restore \
	  go test -mod=vendor -run TestNatpathRender ./pkg/proxy/iptables/

For every node of generator.nodes it builds a proxier the way this package's
tests do (NewFakeProxier), then sets: hostname = the node's name, node IP =
its address (interfaces lo 127.0.0.1/8 and ens192 <ip>/24), local traffic
detected by generator.clusterCIDR, masquerade mark 0x4000, localhostNodePorts
on, nodePortAddresses unset, --random-fully available. It feeds every Service
and one EndpointSlice per Service, runs syncProxyRules() once and writes
  KP_OUT/<node>.restore-input   what kube-proxy hands to iptables-restore --noflush
  KP_OUT/<node>.fake-save       the fake iptables' tables afterwards (restore input
                                applied + the jumps kube-proxy ensures from built-in chains)
*/

package iptables

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/kubernetes/pkg/proxy"
	"k8s.io/kubernetes/pkg/proxy/metrics"
	proxyutiliptables "k8s.io/kubernetes/pkg/proxy/util/iptables"
	proxyutiltest "k8s.io/kubernetes/pkg/proxy/util/testing"
	iptablestest "k8s.io/kubernetes/pkg/util/iptables/testing"
	fakeexec "k8s.io/utils/exec/testing"
	netutils "k8s.io/utils/net"
)

type npFile struct {
	Generator struct {
		ClusterCIDR string `json:"clusterCIDR"`
		Nodes       []struct {
			Name string `json:"name"`
			IP   string `json:"ip"`
		} `json:"nodes"`
	} `json:"generator"`
	Services []npService `json:"services"`
}

type npService struct {
	Namespace                     string   `json:"namespace"`
	Name                          string   `json:"name"`
	Type                          string   `json:"type"`
	ClusterIP                     string   `json:"clusterIP"`
	ExternalTrafficPolicy         string   `json:"externalTrafficPolicy"`
	InternalTrafficPolicy         string   `json:"internalTrafficPolicy"`
	SessionAffinity               string   `json:"sessionAffinity"`
	SessionAffinityTimeoutSeconds int32    `json:"sessionAffinityTimeoutSeconds"`
	HealthCheckNodePort           int32    `json:"healthCheckNodePort"`
	LoadBalancerIngressIPs        []string `json:"loadBalancerIngressIPs"`
	LoadBalancerSourceRanges      []string `json:"loadBalancerSourceRanges"`
	ExternalIPs                   []string `json:"externalIPs"`
	Ports                         []struct {
		Name       string `json:"name"`
		Protocol   string `json:"protocol"`
		Port       int32  `json:"port"`
		TargetPort int32  `json:"targetPort"`
		NodePort   int32  `json:"nodePort"`
	} `json:"ports"`
	Endpoints []struct {
		IP    string `json:"ip"`
		Node  string `json:"node"`
		Ready *bool  `json:"ready"`
	} `json:"endpoints"`
}

func npObjects(f *npFile) ([]*v1.Service, []*discovery.EndpointSlice) {
	var svcs []*v1.Service
	var slices []*discovery.EndpointSlice
	for i := range f.Services {
		s := &f.Services[i]
		svc := makeTestService(s.Namespace, s.Name, func(svc *v1.Service) {
			svc.Spec.Type = v1.ServiceType(s.Type)
			svc.Spec.ClusterIP = s.ClusterIP
			for _, p := range s.Ports {
				svc.Spec.Ports = append(svc.Spec.Ports, v1.ServicePort{
					Name:       p.Name,
					Protocol:   v1.Protocol(p.Protocol),
					Port:       p.Port,
					TargetPort: intstr.FromInt32(p.TargetPort),
					NodePort:   p.NodePort,
				})
			}
			if s.ExternalTrafficPolicy != "" {
				svc.Spec.ExternalTrafficPolicy = v1.ServiceExternalTrafficPolicy(s.ExternalTrafficPolicy)
			}
			if s.InternalTrafficPolicy != "" {
				itp := v1.ServiceInternalTrafficPolicy(s.InternalTrafficPolicy)
				svc.Spec.InternalTrafficPolicy = &itp
			}
			if s.SessionAffinity == "ClientIP" {
				svc.Spec.SessionAffinity = v1.ServiceAffinityClientIP
				t := s.SessionAffinityTimeoutSeconds
				if t == 0 {
					t = v1.DefaultClientIPServiceAffinitySeconds
				}
				svc.Spec.SessionAffinityConfig = &v1.SessionAffinityConfig{ClientIP: &v1.ClientIPConfig{TimeoutSeconds: &t}}
			} else {
				svc.Spec.SessionAffinity = v1.ServiceAffinityNone
			}
			svc.Spec.HealthCheckNodePort = s.HealthCheckNodePort
			svc.Spec.LoadBalancerSourceRanges = s.LoadBalancerSourceRanges
			svc.Spec.ExternalIPs = s.ExternalIPs
			for _, ip := range s.LoadBalancerIngressIPs {
				svc.Status.LoadBalancer.Ingress = append(svc.Status.LoadBalancer.Ingress, v1.LoadBalancerIngress{IP: ip})
			}
		})
		svcs = append(svcs, svc)
		slice := makeTestEndpointSlice(s.Namespace, s.Name, 1, func(eps *discovery.EndpointSlice) {
			eps.AddressType = discovery.AddressTypeIPv4
			for _, e := range s.Endpoints {
				ready := true
				if e.Ready != nil {
					ready = *e.Ready
				}
				node := e.Node
				eps.Endpoints = append(eps.Endpoints, discovery.Endpoint{
					Addresses:  []string{e.IP},
					NodeName:   &node,
					Conditions: discovery.EndpointConditions{Ready: &ready},
				})
			}
			for _, p := range s.Ports {
				name, proto, port := p.Name, v1.Protocol(p.Protocol), p.TargetPort
				eps.Ports = append(eps.Ports, discovery.EndpointPort{Name: &name, Protocol: &proto, Port: &port})
			}
		})
		slices = append(slices, slice)
	}
	return svcs, slices
}

func TestNatpathRender(t *testing.T) {
	in, out := os.Getenv("KP_SERVICES"), os.Getenv("KP_OUT")
	if in == "" || out == "" {
		t.Skip("KP_SERVICES and KP_OUT not set")
	}
	data, err := os.ReadFile(in)
	if err != nil {
		t.Fatal(err)
	}
	var f npFile
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	metrics.RegisterMetrics()
	for _, node := range f.Generator.Nodes {
		ipt := iptablestest.NewFake().SetHasRandomFully(true)
		fp := NewFakeProxier(ipt)
		fp.hostname = node.Name
		fp.nodeIP = netutils.ParseIPSloppy(node.IP)
		fp.endpointsChanges = proxy.NewEndpointChangeTracker(node.Name, newEndpointInfo, v1.IPv4Protocol, nil, nil)
		detect, err := proxyutiliptables.NewDetectLocalByCIDR(f.Generator.ClusterCIDR)
		if err != nil {
			t.Fatal(err)
		}
		fp.localDetector = detect
		fp.masqueradeMark = "0x4000"
		fp.localhostNodePorts = true
		// No conntrack binary: stale-entry cleanup (UDP) only logs an error.
		fp.exec = &fakeexec.FakeExec{LookPathFunc: func(string) (string, error) {
			return "", fmt.Errorf("conntrack: not available in this render")
		}}
		nw := proxyutiltest.NewFakeNetwork()
		nw.AddInterfaceAddr(&net.Interface{Index: 1, Name: "lo"},
			[]net.Addr{&net.IPNet{IP: netutils.ParseIPSloppy("127.0.0.1"), Mask: net.CIDRMask(8, 32)}})
		nw.AddInterfaceAddr(&net.Interface{Index: 2, Name: "ens192"},
			[]net.Addr{&net.IPNet{IP: netutils.ParseIPSloppy(node.IP), Mask: net.CIDRMask(24, 32)}})
		fp.networkInterfacer = nw

		svcs, slices := npObjects(&f)
		makeServiceMap(fp, svcs...)
		populateEndpointSlices(fp, slices...)
		start := time.Now()
		fp.syncProxyRules()
		took := time.Since(start)
		restore := fp.iptablesData.Bytes()
		if err := os.WriteFile(filepath.Join(out, node.Name+".restore-input"), restore, 0o644); err != nil {
			t.Fatal(err)
		}
		var save bytes.Buffer
		if err := ipt.SaveInto("", &save); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(out, node.Name+".fake-save"), save.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %d services, largeClusterMode=%v, syncProxyRules %v, restore input %d bytes",
			node.Name, len(svcs), fp.largeClusterMode, took, len(restore))
	}
}

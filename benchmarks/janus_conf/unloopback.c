/* Preloaded into Janus by benchmarks/janus.py: getifaddrs() reports the
 * loopback interface without IFF_LOOPBACK, so Janus (whose interface scan
 * skips loopback interfaces) gathers a 127.0.0.1 host candidate. Together
 * with ice_enforce_list = "lo" this keeps all media on 127.0.0.1. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <ifaddrs.h>
#include <net/if.h>

int getifaddrs(struct ifaddrs **ifap)
{
	static int (*real)(struct ifaddrs **);
	if (!real)
		real = (int (*)(struct ifaddrs **))dlsym(RTLD_NEXT, "getifaddrs");
	int rc = real(ifap);
	if (rc == 0)
		for (struct ifaddrs *ifa = *ifap; ifa; ifa = ifa->ifa_next)
			ifa->ifa_flags &= ~IFF_LOOPBACK;
	return rc;
}

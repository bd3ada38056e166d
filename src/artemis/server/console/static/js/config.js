// How often the console asks the node for what it shows. The console benchmark
// (benchmarks/bench_console.py) reads these numbers to load a node as open consoles do.
export const OVERVIEW_EVERY_MS = 2000;   // the node at a glance (every page: the header shows it)
export const SERVICES_EVERY_MS = 5000;   // the page of services on screen
export const SERVICE_EVERY_MS = 5000;    // one service's page (leases); changes come by push
export const SEARCH_DELAY_MS = 120;      // typing pause before a search is sent
export const RECONNECT_MS = [250, 500, 1000, 2000, 5000];  // push reconnects, then every 5 s
export const SERVICES_PAGE = 50;
export const INSTANCES_PAGE = 100;
export const AUDIT_PAGE = 50;

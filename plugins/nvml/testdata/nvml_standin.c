/*
 * A stand-in for NVIDIA's libnvidia-ml.so.1, for the nvml plugin's tests on machines without a GPU.
 *
 * Every exported function has the signature NVIDIA's public header declares (nvml.h, shipped with the CUDA
 * toolkit and in the NVIDIA/nvidia-settings and go-nvml repositories: "NVML API Reference", driver branch
 * 535+). The typedefs below are written out from that header so that this file builds with gcc alone; the
 * struct layouts (field order and types) are NVML's, so the plugin's FFI offsets are checked against them.
 *
 * The machine it models (all values deterministic, chosen for hand computation in nvml_test.ts):
 *   index 0  "NVIDIA H100 80GB HBM3", bus 00000000:17:00.0, Hopper, PCI id 0x2330: every query works;
 *            the instant-power field (NVML_FI_DEV_POWER_INSTANT, 186) reads 312 500 mW and
 *            nvmlDeviceGetPowerUsage (a 1 s average on Hopper) 300 000 mW; total energy starts at
 *            1 000 000 mJ and grows by 250 mJ at each nvmlDeviceGetTotalEnergyConsumption call.
 *   index 1  bus 00000000:65:00.0: lost (nvmlDeviceGetPciInfo answers, every other query returns
 *            NVML_ERROR_GPU_IS_LOST, as after an Xid 79 "GPU has fallen off the bus").
 *   index 2  "NVIDIA A100-SXM4-40GB", bus 00000000:B1:00.0, Ampere GA100, PCI id 0x20B0, MIG enabled with two
 *            GPU instances (ids 1 and 2): the parent answers energy (+100 mJ a call from 500 000 mJ), power
 *            (250 000 mW, instant on GA100), temperature, clocks and memory, not utilization (as NVML on a MIG
 *            parent); the instant-power field returns NVML_ERROR_NOT_SUPPORTED in its nvmlReturn. Each MIG
 *            device answers memory and its compute processes only.
 *
 * Build variants:
 *   gcc -shared -fPIC -o libnvidia-ml.so.1 nvml_standin.c               (a current driver)
 *   gcc -shared -fPIC -DOLD_DRIVER -o libnvidia-ml.so.1 nvml_standin.c  (an old driver: no field values, no
 *       _v3 process queries, no nvmlDeviceGetMemoryInfo_v2, no MIG, no nvmlDeviceGetArchitecture, no
 *       nvmlDeviceGetPciInfo_v3: the symbols R418-era drivers lack)
 *   gcc -shared -fPIC -DR525 -o libnvidia-ml.so.1 nvml_standin.c        (an R525-R530 driver, CUDA 12.0/12.1
 *       header: nvmlProcessInfo_t, the struct of the _v3 process queries, has a fourth 64-bit field
 *       usedGpuCcProtectedMemory, so 32 bytes an entry where R535+ and _v2 use 24; the library exports
 *       nvmlDeviceGetConfComputeMemSizeInfo but not nvmlDeviceGetRunningProcessDetailList (R535+, which moved
 *       usedGpuCcProtectedMemory into nvmlProcessDetail_v1_t). nvitop's libnvml.py tells this case apart by
 *       those two exports.)
 *   The current build models R535+: it exports both, and its nvmlProcessInfo_t is 24 bytes (== _v2).
 *
 * Environment switches (read by nvmlInit_v2, so set them before the plugin starts):
 *   NVML_STANDIN_NO_GPU=1        nvmlInit_v2 returns NVML_ERROR_DRIVER_NOT_LOADED.
 *   NVML_STANDIN_PROCESSES=<n>   the H100 runs n compute processes, pid 6000+i using (i+1) MiB each (and, in
 *                                the R525 layout, usedGpuCcProtectedMemory 0xDEADBEEF, which no reader should
 *                                take for a pid or a memory size), instead of the two below.
 *   NVML_STANDIN_NO_PERMISSION=1 the MIG-enabled A100's parent handle answers nvmlDeviceGet{Compute,Graphics}
 *                                RunningProcesses and nvmlDeviceGetMemoryInfo(_v2) with NVML_ERROR_NO_PERMISSION,
 *                                as NVML does for a non-root caller on a MIG-enabled GPU.
 *   NVML_STANDIN_FIELD_RETURN=<r> the H100's NVML_FI_DEV_POWER_INSTANT field comes back with nvmlReturn r (the
 *                                call itself succeeds), as a pre-R525 driver may answer an unknown field id.
 * Test controls (exported, not NVML's; called by the tests through their own dlopen of the same file):
 *   nvml_standin_lose(i)        from now on GPU i answers NVML_ERROR_GPU_IS_LOST (a GPU lost mid-run).
 *   nvml_standin_last_seen()    the lastSeenTimeStamp of the last nvmlDeviceGetProcessUtilization call.
 *   nvml_standin_cold_inits()   how many nvmlInit_v2 calls found NVML not initialised (each one is a driver
 *                               initialisation on a real machine without persistence mode: seconds on 8 GPUs).
 * nvmlDeviceGetProcessUtilization returns NVML_ERROR_NOT_FOUND unless lastSeenTimeStamp is 0 or looks like
 * µs since the epoch (between 1e15, Sept. 2001, and 1e17), so a ms or ns value fails the tests.
 */
#include <stdlib.h>
#include <string.h>

#ifdef R525
#ifdef OLD_DRIVER
#error "R525 and OLD_DRIVER are exclusive"
#endif
#endif

/* ---- from nvml.h ---- */
typedef enum nvmlReturn_enum {
    NVML_SUCCESS = 0,
    NVML_ERROR_UNINITIALIZED = 1,
    NVML_ERROR_INVALID_ARGUMENT = 2,
    NVML_ERROR_NOT_SUPPORTED = 3,
    NVML_ERROR_NO_PERMISSION = 4,
    NVML_ERROR_NOT_FOUND = 6,
    NVML_ERROR_INSUFFICIENT_SIZE = 7,
    NVML_ERROR_DRIVER_NOT_LOADED = 9,
    NVML_ERROR_GPU_IS_LOST = 15,
    NVML_ERROR_UNKNOWN = 999
} nvmlReturn_t;

typedef struct nvmlDevice_st *nvmlDevice_t;

#define NVML_DEVICE_PCI_BUS_ID_BUFFER_SIZE 32
#define NVML_DEVICE_PCI_BUS_ID_BUFFER_V2_SIZE 16
typedef struct nvmlPciInfo_st {
    char busIdLegacy[NVML_DEVICE_PCI_BUS_ID_BUFFER_V2_SIZE];
    unsigned int domain;
    unsigned int bus;
    unsigned int device;
    unsigned int pciDeviceId;
    unsigned int pciSubSystemId;
    char busId[NVML_DEVICE_PCI_BUS_ID_BUFFER_SIZE];
} nvmlPciInfo_t;

typedef struct nvmlUtilization_st {
    unsigned int gpu;
    unsigned int memory;
} nvmlUtilization_t;

typedef struct nvmlMemory_st {
    unsigned long long total;
    unsigned long long free;
    unsigned long long used;
} nvmlMemory_t;

typedef struct nvmlMemory_v2_st {
    unsigned int version;
    unsigned long long total;
    unsigned long long reserved;
    unsigned long long free;
    unsigned long long used;
} nvmlMemory_v2_t;
#define NVML_STRUCT_VERSION(data, ver) (unsigned int)(sizeof(nvml##data##_v##ver##_t) | (ver << 24U))
#define nvmlMemory_v2 NVML_STRUCT_VERSION(Memory, 2)

typedef enum nvmlTemperatureSensors_enum { NVML_TEMPERATURE_GPU = 0 } nvmlTemperatureSensors_t;

typedef enum nvmlClockType_enum {
    NVML_CLOCK_GRAPHICS = 0,
    NVML_CLOCK_SM = 1,
    NVML_CLOCK_MEM = 2,
    NVML_CLOCK_VIDEO = 3
} nvmlClockType_t;

typedef enum nvmlValueType_enum {
    NVML_VALUE_TYPE_DOUBLE = 0,
    NVML_VALUE_TYPE_UNSIGNED_INT = 1
} nvmlValueType_t;

typedef union nvmlValue_st {
    double dVal;
    int siVal;
    unsigned int uiVal;
    unsigned long ulVal;
    unsigned long long ullVal;
    signed long long sllVal;
    unsigned short usVal;
} nvmlValue_t;

typedef struct nvmlFieldValue_st {
    unsigned int fieldId;
    unsigned int scopeId;
    long long timestamp;
    long long latencyUsec;
    nvmlValueType_t valueType;
    nvmlReturn_t nvmlReturn;
    nvmlValue_t value;
} nvmlFieldValue_t;
#define NVML_FI_DEV_POWER_AVERAGE 185
#define NVML_FI_DEV_POWER_INSTANT 186

/* _v2 (all drivers since R470): 24 bytes */
typedef struct nvmlProcessInfo_v2_st {
    unsigned int pid;
    unsigned long long usedGpuMemory;
    unsigned int gpuInstanceId;
    unsigned int computeInstanceId;
} nvmlProcessInfo_v2_t;

/* What the _v3 process queries fill: CUDA 12.0/12.1 headers (R525-R530) added usedGpuCcProtectedMemory;
 * R535 took it out again (nvmlProcessInfo_t == nvmlProcessInfo_v2_t since). */
typedef struct nvmlProcessInfo_st {
    unsigned int pid;
    unsigned long long usedGpuMemory;
    unsigned int gpuInstanceId;
    unsigned int computeInstanceId;
#ifdef R525
    unsigned long long usedGpuCcProtectedMemory;
#endif
} nvmlProcessInfo_t;

typedef struct nvmlProcessUtilizationSample_st {
    unsigned int pid;
    unsigned long long timeStamp;
    unsigned int smUtil;
    unsigned int memUtil;
    unsigned int encUtil;
    unsigned int decUtil;
} nvmlProcessUtilizationSample_t;

typedef unsigned int nvmlDeviceArchitecture_t;
#define NVML_DEVICE_ARCH_AMPERE 7
#define NVML_DEVICE_ARCH_HOPPER 9
#define NVML_DEVICE_MIG_ENABLE 1
/* ---- end of nvml.h ---- */

struct nvmlDevice_st {
    int index;        /* physical index, or the parent's for a MIG device */
    int mig;          /* -1: physical; else the MIG device index */
    unsigned int gi;  /* GPU instance id of a MIG device */
};

static struct nvmlDevice_st devices[3] = {{0, -1, 0}, {1, -1, 0}, {2, -1, 0}};
#ifndef OLD_DRIVER
static struct nvmlDevice_st migs[2] = {{2, 0, 1}, {2, 1, 2}};
#endif
static unsigned long long energy[3] = {1000000ULL, 0ULL, 500000ULL};
static const unsigned long long energy_step[3] = {250ULL, 0ULL, 100ULL};
static int initialized = 0;
static volatile int lost[3] = {0, 1, 0};
static volatile unsigned long long last_seen = 0;
static unsigned int n_processes = 2;
static int custom_processes = 0;
static int no_permission = 0;
static int field_return = 0;

void nvml_standin_lose(int index) {
    if (index >= 0 && index < 3) lost[index] = 1;
}
unsigned long long nvml_standin_last_seen(void) { return last_seen; }
/* How many times the "driver" was initialised from nothing (nvmlInit_v2 with no other handle open). */
static volatile int cold_inits = 0;
int nvml_standin_cold_inits(void) { return cold_inits; }

#define GIB (1024ULL * 1024ULL * 1024ULL)

/* Common checks: NVML initialised, a valid handle; the lost GPU fails every query but its PCI info. */
#define CHECK(dev)                                               \
    do {                                                         \
        if (!initialized) return NVML_ERROR_UNINITIALIZED;       \
        if ((dev) == NULL) return NVML_ERROR_INVALID_ARGUMENT;   \
        if ((dev)->mig < 0 && lost[(dev)->index]) return NVML_ERROR_GPU_IS_LOST; \
    } while (0)
#define PHYSICAL_ONLY(dev) \
    do { if ((dev)->mig >= 0) return NVML_ERROR_NOT_SUPPORTED; } while (0)

nvmlReturn_t nvmlInit_v2(void) {
    const char *nogpu = getenv("NVML_STANDIN_NO_GPU");
    if (nogpu != NULL && strcmp(nogpu, "1") == 0) return NVML_ERROR_DRIVER_NOT_LOADED;
    const char *procs = getenv("NVML_STANDIN_PROCESSES");
    custom_processes = procs != NULL && *procs != 0;
    n_processes = custom_processes ? (unsigned int)strtoul(procs, NULL, 10) : 2;
    const char *perm = getenv("NVML_STANDIN_NO_PERMISSION");
    no_permission = perm != NULL && strcmp(perm, "1") == 0;
    const char *field = getenv("NVML_STANDIN_FIELD_RETURN");
    field_return = field != NULL && *field != 0 ? atoi(field) : 0;
    /* Workers initialise concurrently: atomic, as NVML's own reference count */
    if (__atomic_fetch_add(&initialized, 1, __ATOMIC_SEQ_CST) == 0) __atomic_fetch_add(&cold_inits, 1, __ATOMIC_SEQ_CST);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlShutdown(void) {
    if (!initialized) return NVML_ERROR_UNINITIALIZED;
    __atomic_fetch_sub(&initialized, 1, __ATOMIC_SEQ_CST);
    return NVML_SUCCESS;
}

const char *nvmlErrorString(nvmlReturn_t result) {
    switch (result) {
    case NVML_SUCCESS: return "Success";
    case NVML_ERROR_UNINITIALIZED: return "Uninitialized";
    case NVML_ERROR_INVALID_ARGUMENT: return "Invalid Argument";
    case NVML_ERROR_NOT_SUPPORTED: return "Not Supported";
    case NVML_ERROR_NO_PERMISSION: return "Insufficient Permissions";
    case NVML_ERROR_NOT_FOUND: return "Not Found";
    case NVML_ERROR_INSUFFICIENT_SIZE: return "Insufficient Size";
    case NVML_ERROR_DRIVER_NOT_LOADED: return "Driver Not Loaded";
    case NVML_ERROR_GPU_IS_LOST: return "GPU is lost";
    default: return "Unknown Error";
    }
}

nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *deviceCount) {
    if (!initialized) return NVML_ERROR_UNINITIALIZED;
    *deviceCount = 3;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device) {
    if (!initialized) return NVML_ERROR_UNINITIALIZED;
    if (index >= 3) return NVML_ERROR_INVALID_ARGUMENT;
    *device = &devices[index];
    return NVML_SUCCESS;
}

static nvmlReturn_t pci_info(nvmlDevice_t device, nvmlPciInfo_t *pci) {
    static const char *bus[3] = {"00000000:17:00.0", "00000000:65:00.0", "00000000:B1:00.0"};
    static const unsigned int ids[3] = {0x233010DE, 0x20B510DE, 0x20B010DE};
    static const unsigned int bus_no[3] = {0x17, 0x65, 0xB1};
    if (!initialized) return NVML_ERROR_UNINITIALIZED;
    if (device == NULL || pci == NULL) return NVML_ERROR_INVALID_ARGUMENT;
    memset(pci, 0, sizeof *pci);
    strcpy(pci->busId, bus[device->index]);
    strncpy(pci->busIdLegacy, bus[device->index] + 4, sizeof pci->busIdLegacy - 1);
    pci->bus = bus_no[device->index];
    pci->pciDeviceId = ids[device->index];
    return NVML_SUCCESS;
}

#ifndef OLD_DRIVER
nvmlReturn_t nvmlDeviceGetPciInfo_v3(nvmlDevice_t device, nvmlPciInfo_t *pci) { return pci_info(device, pci); }
#endif
nvmlReturn_t nvmlDeviceGetPciInfo_v2(nvmlDevice_t device, nvmlPciInfo_t *pci) { return pci_info(device, pci); }

nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t device, char *name, unsigned int length) {
    static const char *names[3] = {"NVIDIA H100 80GB HBM3", "NVIDIA A100-PCIE-40GB", "NVIDIA A100-SXM4-40GB"};
    CHECK(device);
    const char *n = device->mig >= 0 ? "NVIDIA A100-SXM4-40GB MIG 3g.20gb" : names[device->index];
    if (strlen(n) + 1 > length) return NVML_ERROR_INSUFFICIENT_SIZE;
    strcpy(name, n);
    return NVML_SUCCESS;
}

#ifndef OLD_DRIVER
nvmlReturn_t nvmlDeviceGetArchitecture(nvmlDevice_t device, nvmlDeviceArchitecture_t *arch) {
    CHECK(device);
    *arch = device->index == 0 ? NVML_DEVICE_ARCH_HOPPER : NVML_DEVICE_ARCH_AMPERE;
    return NVML_SUCCESS;
}
#endif

nvmlReturn_t nvmlDeviceGetTotalEnergyConsumption(nvmlDevice_t device, unsigned long long *e) {
    CHECK(device);
    PHYSICAL_ONLY(device);
    energy[device->index] += energy_step[device->index];
    *e = energy[device->index];
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetPowerUsage(nvmlDevice_t device, unsigned int *power) {
    CHECK(device);
    PHYSICAL_ONLY(device);
    *power = device->index == 0 ? 300000 : 250000;
    return NVML_SUCCESS;
}

#ifndef OLD_DRIVER
nvmlReturn_t nvmlDeviceGetFieldValues(nvmlDevice_t device, int valuesCount, nvmlFieldValue_t *values) {
    CHECK(device);
    for (int i = 0; i < valuesCount; i++) {
        nvmlFieldValue_t *v = &values[i];
        v->timestamp = 1700000000000000LL;
        v->latencyUsec = 0;
        if (device->mig < 0 && device->index == 0 &&
            (v->fieldId == NVML_FI_DEV_POWER_INSTANT || v->fieldId == NVML_FI_DEV_POWER_AVERAGE)) {
            v->valueType = NVML_VALUE_TYPE_UNSIGNED_INT;
            v->value.uiVal = v->fieldId == NVML_FI_DEV_POWER_INSTANT ? 312500 : 300000;
            v->nvmlReturn = v->fieldId == NVML_FI_DEV_POWER_INSTANT ? (nvmlReturn_t)field_return : NVML_SUCCESS;
        } else {
            v->nvmlReturn = NVML_ERROR_NOT_SUPPORTED;
        }
    }
    return NVML_SUCCESS;
}
#endif

nvmlReturn_t nvmlDeviceGetTemperature(nvmlDevice_t device, nvmlTemperatureSensors_t sensor, unsigned int *temp) {
    CHECK(device);
    PHYSICAL_ONLY(device);
    if (sensor != NVML_TEMPERATURE_GPU) return NVML_ERROR_INVALID_ARGUMENT;
    *temp = device->index == 0 ? 54 : 47;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t device, nvmlUtilization_t *u) {
    CHECK(device);
    if (device->mig >= 0 || device->index == 2) return NVML_ERROR_NOT_SUPPORTED; /* MIG parent and MIG devices */
    u->gpu = 87;
    u->memory = 41;
    return NVML_SUCCESS;
}

static void memory_of(nvmlDevice_t device, unsigned long long *total, unsigned long long *reserved,
                      unsigned long long *used) {
    if (device->mig >= 0) {
        *total = 20 * GIB;
        *reserved = 0;
        *used = device->mig == 0 ? 1 * GIB : 0;
    } else if (device->index == 0) {
        *total = 80 * GIB;
        *reserved = 512ULL * 1024 * 1024;
        *used = 10 * GIB;
    } else {
        *total = 40 * GIB;
        *reserved = 256ULL * 1024 * 1024;
        *used = 1 * GIB;
    }
}

/* The MIG-enabled A100's parent handle, for a non-root caller with NVML_STANDIN_NO_PERMISSION=1. */
#define DENIED(dev) (no_permission && (dev)->mig < 0 && (dev)->index == 2)

nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t device, nvmlMemory_t *memory) {
    unsigned long long total, reserved, used;
    CHECK(device);
    if (DENIED(device)) return NVML_ERROR_NO_PERMISSION;
    memory_of(device, &total, &reserved, &used);
    memory->total = total;
    memory->used = used + reserved; /* v1 counts the reserved memory as used */
    memory->free = total - reserved - used;
    return NVML_SUCCESS;
}

#ifndef OLD_DRIVER
nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t device, nvmlMemory_v2_t *memory) {
    unsigned long long total, reserved, used;
    CHECK(device);
    if (DENIED(device)) return NVML_ERROR_NO_PERMISSION;
    if (memory->version != nvmlMemory_v2) return 25; /* NVML_ERROR_ARGUMENT_VERSION_MISMATCH */
    memory_of(device, &total, &reserved, &used);
    memory->total = total;
    memory->reserved = reserved;
    memory->used = used;
    memory->free = total - reserved - used;
    return NVML_SUCCESS;
}
#endif

nvmlReturn_t nvmlDeviceGetClockInfo(nvmlDevice_t device, nvmlClockType_t type, unsigned int *clock) {
    static const unsigned int mhz[4] = {1980, 1980, 2619, 1755};
    CHECK(device);
    PHYSICAL_ONLY(device);
    if ((unsigned int)type > 3) return NVML_ERROR_INVALID_ARGUMENT;
    *clock = device->index == 0 ? mhz[type] : mhz[type] / 2;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetEncoderUtilization(nvmlDevice_t device, unsigned int *u, unsigned int *period) {
    CHECK(device);
    PHYSICAL_ONLY(device);
    *u = 0;
    *period = 167000;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetDecoderUtilization(nvmlDevice_t device, unsigned int *u, unsigned int *period) {
    CHECK(device);
    PHYSICAL_ONLY(device);
    *u = 5;
    *period = 167000;
    return NVML_SUCCESS;
}

/*
 * Compute processes: two on the H100 (or NVML_STANDIN_PROCESSES), one on MIG device 0 of the A100; graphics
 * processes: none. The list is written with the struct of the version called: 24-byte _v2 entries, or
 * nvmlProcessInfo_t for _v3 (32 bytes in the R525 build). *count is the room the caller gives, in entries.
 */
#define MAX_PROCESSES 256
static nvmlReturn_t compute_processes(nvmlDevice_t device, unsigned int *count, void *infos, int v3) {
    static nvmlProcessInfo_v2_t list[MAX_PROCESSES];
    unsigned int n = 0;
    CHECK(device);
    if (DENIED(device)) return NVML_ERROR_NO_PERMISSION;
    if (device->mig < 0 && device->index == 0) {
        if (custom_processes) {
            n = n_processes > MAX_PROCESSES ? MAX_PROCESSES : n_processes;
            for (unsigned int i = 0; i < n; i++) {
                list[i] = (nvmlProcessInfo_v2_t){6000 + i, (i + 1) * 1024ULL * 1024ULL, 0xFFFFFFFF, 0xFFFFFFFF};
            }
        } else {
            list[0] = (nvmlProcessInfo_v2_t){4242, 8 * GIB, 0xFFFFFFFF, 0xFFFFFFFF};
            list[1] = (nvmlProcessInfo_v2_t){4243, 2 * GIB, 0xFFFFFFFF, 0xFFFFFFFF};
            n = 2;
        }
    } else if (device->mig == 0) {
        list[0] = (nvmlProcessInfo_v2_t){5001, 1 * GIB, device->gi, 0};
        n = 1;
    }
    if (*count < n || (n > 0 && infos == NULL)) {
        *count = n;
        return NVML_ERROR_INSUFFICIENT_SIZE;
    }
    *count = n;
    for (unsigned int i = 0; i < n; i++) {
        if (v3) {
            nvmlProcessInfo_t *e = &((nvmlProcessInfo_t *)infos)[i];
            memset(e, 0, sizeof *e);
            e->pid = list[i].pid;
            e->usedGpuMemory = list[i].usedGpuMemory;
            e->gpuInstanceId = list[i].gpuInstanceId;
            e->computeInstanceId = list[i].computeInstanceId;
#ifdef R525
            e->usedGpuCcProtectedMemory = 0xDEADBEEFULL;
#endif
        } else {
            ((nvmlProcessInfo_v2_t *)infos)[i] = list[i];
        }
    }
    return NVML_SUCCESS;
}

static nvmlReturn_t graphics_processes(nvmlDevice_t device, unsigned int *count, void *infos) {
    (void)infos;
    CHECK(device);
    if (DENIED(device)) return NVML_ERROR_NO_PERMISSION;
    *count = 0;
    return NVML_SUCCESS;
}

#ifndef OLD_DRIVER
nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v3(nvmlDevice_t d, unsigned int *c, nvmlProcessInfo_t *i) {
    return compute_processes(d, c, i, 1);
}
nvmlReturn_t nvmlDeviceGetGraphicsRunningProcesses_v3(nvmlDevice_t d, unsigned int *c, nvmlProcessInfo_t *i) {
    return graphics_processes(d, c, i);
}
/* Exported only so that the library looks like its driver branch (its argument types are not used). */
nvmlReturn_t nvmlDeviceGetConfComputeMemSizeInfo(nvmlDevice_t d, void *memInfo) {
    (void)memInfo;
    CHECK(d);
    return NVML_ERROR_NOT_SUPPORTED;
}
#ifndef R525
nvmlReturn_t nvmlDeviceGetRunningProcessDetailList(nvmlDevice_t d, void *plist) {
    (void)plist;
    CHECK(d);
    return NVML_ERROR_NOT_SUPPORTED;
}
#endif
#endif
nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v2(nvmlDevice_t d, unsigned int *c, nvmlProcessInfo_v2_t *i) {
    return compute_processes(d, c, i, 0);
}
nvmlReturn_t nvmlDeviceGetGraphicsRunningProcesses_v2(nvmlDevice_t d, unsigned int *c, nvmlProcessInfo_v2_t *i) {
    return graphics_processes(d, c, i);
}

/*
 * Per-process samples newer than lastSeenTimeStamp (µs): on the H100, pid 4242 (sm 80, mem 30, enc 0, dec 0)
 * and pid 4243 (sm 7, mem 11, enc 0, dec 0), stamped lastSeen + 1000 µs; with utilization NULL, the count.
 */
nvmlReturn_t nvmlDeviceGetProcessUtilization(nvmlDevice_t device, nvmlProcessUtilizationSample_t *utilization,
                                             unsigned int *processSamplesCount,
                                             unsigned long long lastSeenTimeStamp) {
    CHECK(device);
    if (device->mig >= 0 || device->index != 0) return NVML_ERROR_NOT_SUPPORTED;
    last_seen = lastSeenTimeStamp;
    /* µs since the epoch (nvml.h: "timestamp in CPU microseconds"), or 0 for every sample */
    if (lastSeenTimeStamp != 0 && (lastSeenTimeStamp < 1000000000000000ULL ||
                                   lastSeenTimeStamp >= 100000000000000000ULL)) {
        return NVML_ERROR_NOT_FOUND;
    }
    if (utilization == NULL || *processSamplesCount < 2) {
        *processSamplesCount = 2;
        return NVML_ERROR_INSUFFICIENT_SIZE;
    }
    utilization[0] = (nvmlProcessUtilizationSample_t){4242, lastSeenTimeStamp + 1000, 80, 30, 0, 0};
    utilization[1] = (nvmlProcessUtilizationSample_t){4243, lastSeenTimeStamp + 1000, 7, 11, 0, 0};
    *processSamplesCount = 2;
    return NVML_SUCCESS;
}

#ifndef OLD_DRIVER
nvmlReturn_t nvmlDeviceGetMigMode(nvmlDevice_t device, unsigned int *currentMode, unsigned int *pendingMode) {
    CHECK(device);
    if (device->mig >= 0 || device->index != 2) return NVML_ERROR_NOT_SUPPORTED; /* H100 here: MIG off */
    *currentMode = NVML_DEVICE_MIG_ENABLE;
    *pendingMode = NVML_DEVICE_MIG_ENABLE;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMaxMigDeviceCount(nvmlDevice_t device, unsigned int *count) {
    CHECK(device);
    PHYSICAL_ONLY(device);
    *count = device->index == 2 ? 7 : 0;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMigDeviceHandleByIndex(nvmlDevice_t device, unsigned int index, nvmlDevice_t *mig) {
    CHECK(device);
    PHYSICAL_ONLY(device);
    if (device->index != 2 || index >= 7) return NVML_ERROR_INVALID_ARGUMENT;
    if (index >= 2) return NVML_ERROR_NOT_FOUND;
    *mig = &migs[index];
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetGpuInstanceId(nvmlDevice_t device, unsigned int *id) {
    CHECK(device);
    if (device->mig < 0) return NVML_ERROR_NOT_SUPPORTED;
    *id = device->gi;
    return NVML_SUCCESS;
}
#endif

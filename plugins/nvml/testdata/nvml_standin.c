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
 * NVML_STANDIN_NO_GPU=1 in the environment makes nvmlInit_v2 return NVML_ERROR_DRIVER_NOT_LOADED.
 */
#include <stdlib.h>
#include <string.h>

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

typedef struct nvmlProcessInfo_st {
    unsigned int pid;
    unsigned long long usedGpuMemory;
    unsigned int gpuInstanceId;
    unsigned int computeInstanceId;
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

#define GIB (1024ULL * 1024ULL * 1024ULL)

/* Common checks: NVML initialised, a valid handle; the lost GPU fails every query but its PCI info. */
#define CHECK(dev)                                               \
    do {                                                         \
        if (!initialized) return NVML_ERROR_UNINITIALIZED;       \
        if ((dev) == NULL) return NVML_ERROR_INVALID_ARGUMENT;   \
        if ((dev)->mig < 0 && (dev)->index == 1) return NVML_ERROR_GPU_IS_LOST; \
    } while (0)
#define PHYSICAL_ONLY(dev) \
    do { if ((dev)->mig >= 0) return NVML_ERROR_NOT_SUPPORTED; } while (0)

nvmlReturn_t nvmlInit_v2(void) {
    const char *nogpu = getenv("NVML_STANDIN_NO_GPU");
    if (nogpu != NULL && strcmp(nogpu, "1") == 0) return NVML_ERROR_DRIVER_NOT_LOADED;
    initialized++;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlShutdown(void) {
    if (!initialized) return NVML_ERROR_UNINITIALIZED;
    initialized--;
    return NVML_SUCCESS;
}

const char *nvmlErrorString(nvmlReturn_t result) {
    switch (result) {
    case NVML_SUCCESS: return "Success";
    case NVML_ERROR_UNINITIALIZED: return "Uninitialized";
    case NVML_ERROR_INVALID_ARGUMENT: return "Invalid Argument";
    case NVML_ERROR_NOT_SUPPORTED: return "Not Supported";
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
            v->nvmlReturn = NVML_SUCCESS;
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

nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t device, nvmlMemory_t *memory) {
    unsigned long long total, reserved, used;
    CHECK(device);
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

/* Compute processes: two on the H100, one on MIG device 0 of the A100; graphics processes: none. */
static nvmlReturn_t compute_processes(nvmlDevice_t device, unsigned int *count, nvmlProcessInfo_t *infos) {
    nvmlProcessInfo_t list[2];
    unsigned int n = 0;
    CHECK(device);
    if (device->mig < 0 && device->index == 0) {
        list[0] = (nvmlProcessInfo_t){4242, 8 * GIB, 0xFFFFFFFF, 0xFFFFFFFF};
        list[1] = (nvmlProcessInfo_t){4243, 2 * GIB, 0xFFFFFFFF, 0xFFFFFFFF};
        n = 2;
    } else if (device->mig == 0) {
        list[0] = (nvmlProcessInfo_t){5001, 1 * GIB, device->gi, 0};
        n = 1;
    }
    if (*count < n || (n > 0 && infos == NULL)) {
        *count = n;
        return NVML_ERROR_INSUFFICIENT_SIZE;
    }
    *count = n;
    for (unsigned int i = 0; i < n; i++) infos[i] = list[i];
    return NVML_SUCCESS;
}

static nvmlReturn_t graphics_processes(nvmlDevice_t device, unsigned int *count, nvmlProcessInfo_t *infos) {
    (void)infos;
    CHECK(device);
    *count = 0;
    return NVML_SUCCESS;
}

#ifndef OLD_DRIVER
nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v3(nvmlDevice_t d, unsigned int *c, nvmlProcessInfo_t *i) {
    return compute_processes(d, c, i);
}
nvmlReturn_t nvmlDeviceGetGraphicsRunningProcesses_v3(nvmlDevice_t d, unsigned int *c, nvmlProcessInfo_t *i) {
    return graphics_processes(d, c, i);
}
#endif
nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v2(nvmlDevice_t d, unsigned int *c, nvmlProcessInfo_t *i) {
    return compute_processes(d, c, i);
}
nvmlReturn_t nvmlDeviceGetGraphicsRunningProcesses_v2(nvmlDevice_t d, unsigned int *c, nvmlProcessInfo_t *i) {
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

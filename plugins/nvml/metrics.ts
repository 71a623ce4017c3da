/**
 * The nvml plugin's metrics: Alumet's names, units and value types (`plugins/nvidia-nvml` in
 * `alumet-dev/alumet`: `src/metrics.rs` and the expectations of its `run_plugin_full` test).
 *
 * @module
 */
import { defineMetrics } from "../../src/model/metric_set.ts";
import { unit } from "../../src/model/units.ts";

/** Energy and power: the only metrics of `mode = "minimal"`, and the first of `full`. */
export const NVML_ENERGY_METRICS = defineMetrics({
  energy: {
    name: "nvml_energy_consumption",
    unit: unit("J", "milli"),
    valueType: "f64",
    kind: "delta",
    description: "Energy consumed by the GPU (including its memory) since the previous measurement",
  },
  power: {
    name: "nvml_instant_power",
    unit: unit("W", "milli"),
    valueType: "u64",
    kind: "gauge",
    description:
      "Power of the GPU at the time of the measurement (attribute power_reading: instant or average_1s)",
  },
});

/** The other metrics of `mode = "full"`. */
export const NVML_FULL_METRICS = defineMetrics({
  temperature: {
    name: "nvml_temperature_gpu",
    unit: unit("Cel"),
    valueType: "u64",
    kind: "gauge",
    description: "Temperature of the GPU die at the time of the measurement",
  },
  gpuUtilization: {
    name: "nvml_gpu_utilization",
    unit: unit("%"),
    valueType: "u64",
    kind: "gauge",
    description: "Percent of the last sample period during which a kernel ran on the GPU",
  },
  memoryUtilization: {
    name: "nvml_memory_utilization",
    unit: unit("%"),
    valueType: "u64",
    kind: "gauge",
    description:
      "Percent of the last sample period during which the GPU memory was read or written (per GPU, or per process)",
  },
  memoryInfo: {
    name: "nvml_gpu_memory_info",
    unit: unit("By"),
    valueType: "u64",
    kind: "gauge",
    description: "GPU memory (attribute kind: free, total, used, reserved)",
  },
  encoderUtilization: {
    name: "nvml_encoder_utilization",
    unit: unit("%"),
    valueType: "u64",
    kind: "gauge",
    description: "Utilization of the video encoder (per GPU, or per process)",
  },
  encoderPeriod: {
    name: "nvml_encoder_sampling_period",
    unit: unit("s", "micro"),
    valueType: "u64",
    kind: "gauge",
    description: "Sampling period of the encoder utilization",
  },
  decoderUtilization: {
    name: "nvml_decoder_utilization",
    unit: unit("%"),
    valueType: "u64",
    kind: "gauge",
    description: "Utilization of the video decoder (per GPU, or per process)",
  },
  decoderPeriod: {
    name: "nvml_decoder_sampling_period",
    unit: unit("s", "micro"),
    valueType: "u64",
    kind: "gauge",
    description: "Sampling period of the decoder utilization",
  },
  computeProcesses: {
    name: "nvml_n_compute_processes",
    unit: unit("1"),
    valueType: "u64",
    kind: "gauge",
    description: "Number of compute processes running on the GPU",
  },
  graphicProcesses: {
    name: "nvml_n_graphic_processes",
    unit: unit("1"),
    valueType: "u64",
    kind: "gauge",
    description: "Number of graphics processes running on the GPU",
  },
  usedMemory: {
    name: "nvml_used_gpu_memory",
    unit: unit("By"),
    valueType: "u64",
    kind: "gauge",
    description: "GPU memory used by a process (attribute context: compute or graphics)",
  },
  smUtilization: {
    name: "nvml_sm_utilization",
    unit: unit("%"),
    valueType: "u64",
    kind: "gauge",
    description: "Utilization of the streaming multiprocessors by a process",
  },
  clock: {
    name: "nvml_clock_info",
    unit: unit("Hz"),
    valueType: "u64",
    kind: "gauge",
    description: "Clock frequency (attribute clock_type: SM, Video, Graphics, Memory)",
  },
});

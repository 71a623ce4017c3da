/**
 * The report's npm dependencies, pinned. Only its tests use them (the page itself inlines uPlot from
 * `vendor/uplot.ts`, so `alumet report` needs no package at run time).
 *
 * @module
 */

/** PNG decoding, to check the charts of a page screenshot by headless chromium. */
export { decode as decodePng } from "npm:fast-png@8.0.0";

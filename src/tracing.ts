import {
  type Attributes,
  type Context,
  context,
  propagation,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  type TextMapPropagator,
  type Tracer,
  trace,
} from '@opentelemetry/api';
import type { SpanExporter } from '@opentelemetry/sdk-trace-base';

/**
 * OpenTelemetry traces (docs/operating.md#tracing): one trace from a GraphQL
 * request (its traceparent header continued when the caller sends one)
 * through the group commit of its message to each try of each delivery,
 * whichever worker process sends it (the try's job carries the traceparent).
 *
 * Off unless configured (config.ts reads the OTEL_* variables): the SDK is
 * not even loaded then, and every helper here returns at its first line.
 */

/** How traces leave the process: OTLP over HTTP (the collector's port 4318) or printed to stdout. */
export interface TracingSettings {
  exporter: 'otlp' | 'console';
  serviceName: string;
}

/** A span exporter of the SDK (tests hand an InMemorySpanExporter). */
export type SpanExporterLike = SpanExporter;

export interface Tracing {
  /** Sends the spans still buffered and unregisters the SDK. */
  stop(): Promise<void>;
}

let active: { tracer: Tracer; propagator: TextMapPropagator; suppress: (context: Context) => Context } | undefined;

/** Whether traces are recorded in this process. */
export const tracingOn = (): boolean => active !== undefined;

/**
 * Registers the SDK when `settings` say so (or a test hands an exporter):
 * a NodeTracerProvider (context kept across async calls, sampler and limits
 * from OTEL_* as the SDK reads them), the resource (service.name, then
 * OTEL_RESOURCE_ATTRIBUTES), a batching processor and the exporter (the OTLP
 * exporter reads OTEL_EXPORTER_OTLP_* itself: endpoint, headers, timeout).
 */
export async function startTracing(
  settings: TracingSettings | undefined,
  options: { exporter?: SpanExporterLike; attributes?: Attributes } = {},
): Promise<Tracing | undefined> {
  if (!settings && !options.exporter) return undefined;
  const [sdk, resources, core] = await Promise.all([
    import('@opentelemetry/sdk-trace-node'),
    import('@opentelemetry/resources'),
    import('@opentelemetry/core'),
  ]);
  let exporter = options.exporter;
  if (!exporter && settings?.exporter === 'console') exporter = new sdk.ConsoleSpanExporter();
  if (!exporter) exporter = new (await import('@opentelemetry/exporter-trace-otlp-http')).OTLPTraceExporter();
  const resource = resources
    .defaultResource()
    .merge(resources.detectResources({ detectors: [resources.envDetector] }))
    .merge(
      resources.resourceFromAttributes({
        'service.name': settings?.serviceName ?? 'dispatch',
        ...options.attributes,
      }),
    );
  const provider = new sdk.NodeTracerProvider({
    resource,
    // A test's exporter sees each span as it ends; otherwise spans leave in batches.
    spanProcessors: [options.exporter ? new sdk.SimpleSpanProcessor(exporter) : new sdk.BatchSpanProcessor(exporter)],
  });
  const propagator = new core.W3CTraceContextPropagator();
  provider.register({ propagator });
  active = { tracer: provider.getTracer('dispatch'), propagator, suppress: core.suppressTracing };
  return {
    async stop() {
      active = undefined;
      await provider.shutdown();
      trace.disable();
      context.disable();
      propagation.disable();
    },
  };
}

type Headers = Record<string, string | string[] | undefined>;
const headerGetter = {
  keys: (carrier: Headers) => Object.keys(carrier),
  get: (carrier: Headers, key: string) => carrier[key],
};

/** Runs `work` in the trace context an HTTP request's traceparent header names (or a new trace). */
export function inRequestContext<T>(headers: Headers, work: () => T): T {
  if (!active) return work();
  return context.with(active.propagator.extract(ROOT_CONTEXT, headers, headerGetter), work);
}

/** The W3C traceparent of the current span, to carry it where async context does not reach (a queued job). */
export function currentTraceparent(): string | undefined {
  if (!active) return undefined;
  const carrier: Record<string, string> = {};
  active.propagator.inject(context.active(), carrier, {
    set: (c, key, value) => {
      c[key] = value;
    },
  });
  return carrier.traceparent;
}

export interface SpanOptions {
  kind?: SpanKind;
  attributes?: Attributes;
  /** The traceparent of the parent (a job's); the current context when absent. */
  traceparent?: string | undefined;
  /** Without a traceparent, start a new trace rather than continue the current context's. */
  root?: boolean;
}

/** Starts a span (undefined when tracing is off); the caller ends it. */
export function startSpan(name: string, options: SpanOptions = {}): Span | undefined {
  if (!active) return undefined;
  const parent = options.root && options.traceparent === undefined ? ROOT_CONTEXT : parentOf(options.traceparent);
  return active.tracer.startSpan(
    name,
    { kind: options.kind ?? SpanKind.INTERNAL, ...(options.attributes ? { attributes: options.attributes } : {}) },
    parent,
  );
}

function parentOf(traceparent: string | undefined): Context {
  if (!active || traceparent === undefined) return context.active();
  return active.propagator.extract(ROOT_CONTEXT, { traceparent }, headerGetter);
}

/**
 * Runs `work` with no spans recorded (pg-boss's own spans included): for
 * polls of the queue, which would each be a trace of one span about nothing.
 */
export function untraced<T>(work: () => T): T {
  if (!active) return work();
  return context.with(active.suppress(context.active()), work);
}

/** Runs `work` with `span` as the current span (as is when there is none). */
export function withSpan<T>(span: Span | undefined, work: () => T): T {
  if (!span) return work();
  return context.with(trace.setSpan(context.active(), span), work);
}

/**
 * Runs `work` in a new span, current while it runs, ended when it settles
 * (an error thrown marks it failed). `work` gets the span to add attributes
 * to (undefined when tracing is off).
 */
export async function traced<T>(
  name: string,
  options: SpanOptions,
  work: (span: Span | undefined) => Promise<T>,
): Promise<T> {
  const span = startSpan(name, options);
  if (!span) return work(undefined);
  try {
    return await withSpan(span, () => work(span));
  } catch (error) {
    failed(span, error);
    throw error;
  } finally {
    span.end();
  }
}

/** Marks a span failed by `error`. */
export function failed(span: Span | undefined, error: unknown): void {
  if (!span) return;
  span.recordException(error instanceof Error ? error : String(error));
  span.setStatus({ code: SpanStatusCode.ERROR, message: error instanceof Error ? error.message : String(error) });
}

export { SpanKind, SpanStatusCode };

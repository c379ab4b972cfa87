import { ProxyTracerProvider, trace } from '@opentelemetry/api';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.ts';
import { currentTraceparent, inRequestContext, startSpan, startTracing, tracingOn } from '../../src/tracing.ts';

describe('tracing settings (the standard OTEL_* variables)', () => {
  it('is off with OTEL unset: nothing is registered, and the helpers do nothing', async () => {
    const config = loadConfig({});
    expect(config.tracing).toBeUndefined();
    expect(await startTracing(config.tracing)).toBeUndefined();
    expect(tracingOn()).toBe(false);
    // The API's global provider still delegates to its no-op: no SDK was registered.
    const provider = trace.getTracerProvider() as ProxyTracerProvider;
    expect(provider).toBeInstanceOf(ProxyTracerProvider);
    expect(provider.getDelegate().constructor.name).toBe('NoopTracerProvider');
    expect(trace.getTracer('x').startSpan('y').isRecording()).toBe(false);
    expect(startSpan('dispatch.attempt')).toBeUndefined();
    const traceparent = `00-${'a'.repeat(32)}-${'b'.repeat(16)}-01`;
    expect(inRequestContext({ traceparent }, () => currentTraceparent())).toBeUndefined();
  });

  it('turns on with an OTLP endpoint or a named exporter, and off with OTEL_SDK_DISABLED or none', () => {
    expect(loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' }).tracing).toEqual({
      exporter: 'otlp',
      serviceName: 'dispatch',
    });
    expect(
      loadConfig({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://collector:4318/v1/traces', OTEL_SERVICE_NAME: 'hooks' })
        .tracing,
    ).toEqual({ exporter: 'otlp', serviceName: 'hooks' });
    expect(loadConfig({ OTEL_TRACES_EXPORTER: 'console' }).tracing).toEqual({
      exporter: 'console',
      serviceName: 'dispatch',
    });
    expect(loadConfig({ OTEL_TRACES_EXPORTER: 'otlp' }).tracing?.exporter).toBe('otlp');
    expect(
      loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318', OTEL_SDK_DISABLED: 'TRUE' }).tracing,
    ).toBeUndefined();
    expect(
      loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318', OTEL_TRACES_EXPORTER: 'none' }).tracing,
    ).toBeUndefined();
    expect(
      loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318', OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json' })
        .tracing?.exporter,
    ).toBe('otlp');
  });

  it('refuses what it cannot do with a clear error', () => {
    expect(() => loadConfig({ OTEL_TRACES_EXPORTER: 'zipkin' })).toThrow(ConfigError);
    expect(() => loadConfig({ OTEL_TRACES_EXPORTER: 'zipkin' })).toThrow(/otlp, console or none/);
    expect(() => loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'collector' })).toThrow(/URL/);
    expect(() =>
      loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4317', OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' }),
    ).toThrow(/OTLP over HTTP/);
  });
});

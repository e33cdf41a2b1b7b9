// parquetjs-lite ships no type declarations; this is the part of its API the shard reader and
// writer use (see node_modules/parquetjs-lite/lib/{writer,reader,schema}.js). Internal only: no
// public type of @smolrate/core refers to it.
declare module 'parquetjs-lite' {
  export interface FieldDefinition {
    type: string;
    optional?: boolean;
    repeated?: boolean;
    encoding?: string;
    compression?: string;
    /** `false` writes no min/max statistics (page header, column metadata, column index). */
    statistics?: false;
  }

  export interface ParquetField {
    name: string;
    path: string[];
    primitiveType?: string;
    originalType?: string;
    repetitionType: 'REQUIRED' | 'OPTIONAL' | 'REPEATED';
  }

  export class ParquetSchema {
    constructor(schema: Record<string, FieldDefinition>);
    fieldList: ParquetField[];
  }

  export interface WriterOptions {
    rowGroupSize?: number;
    pageSize?: number;
    useDataPageV2?: boolean;
    pageIndex?: boolean;
  }

  export class ParquetEnvelopeWriter {
    constructor(
      schema: ParquetSchema,
      writeFn: (buf: Buffer) => Promise<void>,
      closeFn: () => Promise<void>,
      fileOffset: number,
      opts: WriterOptions,
    );
  }

  export class ParquetWriter {
    constructor(schema: ParquetSchema, envelopeWriter: ParquetEnvelopeWriter, opts: WriterOptions);
    appendRow(row: Record<string, unknown>): Promise<void>;
    close(): Promise<void>;
    setMetadata(key: string, value: string): void;
  }

  /** node-int64 values in decoded metadata; `Number(x)` converts them. */
  export type ThriftInt64 = { valueOf(): number };

  export interface KeyValue {
    key: string;
    value: string;
  }

  export interface SchemaElement {
    name: string;
    type: number | null;
    converted_type: number | null;
    repetition_type: number | null;
    num_children: number | null;
  }

  export interface RowGroupMetadata {
    num_rows: ThriftInt64;
    columns: unknown[];
  }

  export interface FileMetadata {
    version: number;
    num_rows: ThriftInt64;
    schema: SchemaElement[];
    row_groups: RowGroupMetadata[];
    key_value_metadata: KeyValue[] | null;
    created_by: string | null;
  }

  export class ParquetEnvelopeReader {
    constructor(
      readFn: (offset: number, length: number, file?: string) => Promise<Buffer>,
      closeFn: () => Promise<unknown>,
      fileSize: number,
      options?: Record<string, unknown>,
    );
  }

  export class ParquetCursor {
    nextRowGroup(): Promise<Array<Record<string, unknown>> | null>;
  }

  export class ParquetReader {
    static openEnvelopeReader(envelopeReader: ParquetEnvelopeReader, opts?: Record<string, unknown>): Promise<ParquetReader>;
    metadata: FileMetadata;
    getCursor(columns?: string[]): ParquetCursor;
    getRowCount(): ThriftInt64;
    getMetadata(): Record<string, string>;
    getSchema(): ParquetSchema;
    close(): Promise<void>;
  }

  const parquet: {
    ParquetSchema: typeof ParquetSchema;
    ParquetWriter: typeof ParquetWriter;
    ParquetEnvelopeWriter: typeof ParquetEnvelopeWriter;
    ParquetReader: typeof ParquetReader;
    ParquetEnvelopeReader: typeof ParquetEnvelopeReader;
  };
  export default parquet;
}

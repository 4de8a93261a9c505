//! The dataset contract v1: table names, column names and Arrow types, in one place.
//!
//! Both sides of the pipeline and the schema documentation test read these constants, so a
//! column is named exactly once. Types follow the portability rules of the design: timestamps
//! in microseconds UTC, signed integers only, `map<string,string>` for labels and tags.

use std::sync::{Arc, LazyLock};

use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};

/// Written into every `runs` row; readers refuse files from a newer major contract.
pub const SCHEMA_VERSION: i32 = 1;

/// Columns added to contract v1 after its first files were written. Older files lack them and
/// stay valid; readers that use one must allow for its absence (DuckDB `union_by_name`, Polars
/// `allow_missing_columns`).
pub const ADDED_COLUMNS: &[(Table, &str)] = &[(Table::Samples, col::IN_WINDOW)];

/// The partition column. It lives in the folder name (`date=YYYY-MM-DD`), never in the files.
pub const PARTITION_COLUMN: &str = "date";

/// Marker objects that say a run was delivered (`_delivered/RUN_ID`); compaction keeps them.
pub const DELIVERED_DIR: &str = "_delivered";

/// Compaction's manifests, lock and generation object (`_compaction/…`); readers consult it.
pub const COMPACTION_DIR: &str = "_compaction";

/// The three tables of the dataset, one folder each under the dataset root.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Table {
    Runs,
    Measurements,
    Samples,
}

impl Table {
    pub const ALL: [Table; 3] = [Table::Runs, Table::Measurements, Table::Samples];

    /// The folder name of the table under the dataset root.
    pub fn dir(self) -> &'static str {
        match self {
            Table::Runs => "runs",
            Table::Measurements => "measurements",
            Table::Samples => "samples",
        }
    }

    pub fn from_dir(dir: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.dir() == dir)
    }

    pub fn schema(self) -> SchemaRef {
        match self {
            Table::Runs => RUNS_SCHEMA.clone(),
            Table::Measurements => MEASUREMENTS_SCHEMA.clone(),
            Table::Samples => SAMPLES_SCHEMA.clone(),
        }
    }
}

impl std::fmt::Display for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.dir())
    }
}

/// Column names, shared by writers, readers and docs.
pub mod col {
    pub const RUN_ID: &str = "run_id";
    pub const HOST: &str = "host";
    pub const ROLE: &str = "role";
    pub const LABELS: &str = "labels";
    pub const TAGS: &str = "tags";
    pub const SUITE: &str = "suite";
    pub const SCHEDULE: &str = "schedule";
    pub const STARTED_AT: &str = "started_at";
    pub const FINISHED_AT: &str = "finished_at";
    pub const STATUS: &str = "status";
    pub const STATUS_REASON: &str = "status_reason";
    pub const COLLECTOR_VERSION: &str = "collector_version";
    pub const SCHEMA_VERSION: &str = "schema_version";
    pub const CPU_MODEL: &str = "cpu_model";
    pub const CPU_CORES: &str = "cpu_cores";
    pub const CPU_THREADS: &str = "cpu_threads";
    pub const CPU_FLAGS: &str = "cpu_flags";
    pub const MEM_BYTES: &str = "mem_bytes";
    pub const OS: &str = "os";
    pub const KERNEL: &str = "kernel";
    pub const VIRTUALIZATION: &str = "virtualization";

    pub const PROBE: &str = "probe";
    pub const CATEGORY: &str = "category";
    pub const METRIC: &str = "metric";
    pub const UNIT: &str = "unit";
    pub const HIGHER_IS_BETTER: &str = "higher_is_better";
    pub const PARAMS: &str = "params";
    pub const VALUE: &str = "value";
    pub const MEAN: &str = "mean";
    pub const STDDEV: &str = "stddev";
    pub const CV: &str = "cv";
    pub const MIN: &str = "min";
    pub const MAX: &str = "max";
    pub const N: &str = "n";
    pub const DISTURBED: &str = "disturbed";
    pub const FOREIGN_CPU: &str = "foreign_cpu";

    pub const SEQ: &str = "seq";
    pub const T_OFFSET_S: &str = "t_offset_s";
    pub const IN_WINDOW: &str = "in_window";
}

/// The Arrow type of every timestamp in the dataset: microseconds, UTC.
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// `map<string,string>`, laid out the way Parquet's MAP logical type expects.
pub fn string_map_type() -> DataType {
    let entries = Field::new(
        "key_value",
        DataType::Struct(Fields::from(vec![
            Field::new("key", DataType::Utf8, false),
            Field::new("value", DataType::Utf8, true),
        ])),
        false,
    );
    DataType::Map(Arc::new(entries), false)
}

pub fn string_list_type() -> DataType {
    DataType::List(Arc::new(Field::new("element", DataType::Utf8, true)))
}

fn run_identity_fields() -> Vec<Field> {
    vec![
        Field::new(col::RUN_ID, DataType::Utf8, false),
        Field::new(col::HOST, DataType::Utf8, false),
        Field::new(col::ROLE, DataType::Utf8, false),
        Field::new(col::SUITE, DataType::Utf8, false),
        Field::new(col::STARTED_AT, timestamp_type(), false),
    ]
}

pub static RUNS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new(col::RUN_ID, DataType::Utf8, false),
        Field::new(col::HOST, DataType::Utf8, false),
        Field::new(col::ROLE, DataType::Utf8, false),
        Field::new(col::LABELS, string_map_type(), false),
        Field::new(col::TAGS, string_map_type(), false),
        Field::new(col::SUITE, DataType::Utf8, false),
        Field::new(col::SCHEDULE, DataType::Utf8, true),
        Field::new(col::STARTED_AT, timestamp_type(), false),
        Field::new(col::FINISHED_AT, timestamp_type(), false),
        Field::new(col::STATUS, DataType::Utf8, false),
        Field::new(col::STATUS_REASON, DataType::Utf8, true),
        Field::new(col::COLLECTOR_VERSION, DataType::Utf8, false),
        Field::new(col::SCHEMA_VERSION, DataType::Int32, false),
        Field::new(col::CPU_MODEL, DataType::Utf8, false),
        Field::new(col::CPU_CORES, DataType::Int32, false),
        Field::new(col::CPU_THREADS, DataType::Int32, false),
        Field::new(col::CPU_FLAGS, string_list_type(), false),
        Field::new(col::MEM_BYTES, DataType::Int64, false),
        Field::new(col::OS, DataType::Utf8, false),
        Field::new(col::KERNEL, DataType::Utf8, false),
        Field::new(col::VIRTUALIZATION, DataType::Utf8, false),
    ]))
});

pub static MEASUREMENTS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields = run_identity_fields();
    fields.extend([
        Field::new(col::PROBE, DataType::Utf8, false),
        Field::new(col::CATEGORY, DataType::Utf8, false),
        Field::new(col::METRIC, DataType::Utf8, false),
        Field::new(col::UNIT, DataType::Utf8, false),
        Field::new(col::HIGHER_IS_BETTER, DataType::Boolean, false),
        Field::new(col::PARAMS, DataType::Utf8, false),
        Field::new(col::VALUE, DataType::Float64, false),
        Field::new(col::MEAN, DataType::Float64, true),
        Field::new(col::STDDEV, DataType::Float64, true),
        Field::new(col::CV, DataType::Float64, true),
        Field::new(col::MIN, DataType::Float64, true),
        Field::new(col::MAX, DataType::Float64, true),
        Field::new(col::N, DataType::Int32, false),
        Field::new(col::DISTURBED, DataType::Boolean, false),
        Field::new(col::FOREIGN_CPU, DataType::Float64, true),
    ]);
    Arc::new(Schema::new(fields))
});

pub static SAMPLES_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new(col::RUN_ID, DataType::Utf8, false),
        Field::new(col::PROBE, DataType::Utf8, false),
        Field::new(col::METRIC, DataType::Utf8, false),
        Field::new(col::PARAMS, DataType::Utf8, false),
        Field::new(col::SEQ, DataType::Int32, false),
        Field::new(col::T_OFFSET_S, DataType::Float64, false),
        Field::new(col::VALUE, DataType::Float64, false),
        Field::new(col::IN_WINDOW, DataType::Boolean, false),
    ]))
});

fn same_type(found: &DataType, expected: &DataType) -> bool {
    match (found, expected) {
        (DataType::Timestamp(fu, ftz), DataType::Timestamp(eu, _)) => {
            fu == eu && matches!(ftz.as_deref(), Some("UTC" | "+00:00" | "Etc/UTC"))
        }
        _ => found.equals_datatype(expected),
    }
}

/// Whether `found` (a file's schema) is the contract's schema of `table`: the same columns with
/// the same types; nested field names and the spelling of UTC may differ.
pub fn check_schema(table: Table, found: &Schema) -> Result<(), String> {
    let expected = table.schema();
    for field in expected.fields() {
        let Ok(f) = found.field_with_name(field.name()) else {
            if ADDED_COLUMNS.contains(&(table, field.name().as_str())) {
                continue;
            }
            return Err(format!("missing column `{}`", field.name()));
        };
        if !same_type(f.data_type(), field.data_type()) {
            return Err(format!(
                "column `{}` is {} but the contract says {}",
                field.name(),
                f.data_type(),
                field.data_type()
            ));
        }
    }
    if let Some(extra) = found.fields().iter().find(|f| expected.field_with_name(f.name()).is_err()) {
        return Err(format!("unexpected column `{}`", extra.name()));
    }
    Ok(())
}

/// A human-readable rendering of the three schemas (`fathom-datasets schema`).
pub fn describe() -> String {
    let mut out = format!("# Fathom dataset contract v{SCHEMA_VERSION}\n");
    for table in Table::ALL {
        out.push_str(&format!("\n{}/{}=YYYY-MM-DD/*.parquet\n", table.dir(), PARTITION_COLUMN));
        for field in table.schema().fields() {
            let null = if field.is_nullable() { "" } else { " not null" };
            out.push_str(&format!("  {:<18} {}{}\n", field.name(), type_name(field.data_type()), null));
        }
    }
    out
}

/// Engine-neutral type names, as an analyst sees them in DuckDB or Spark.
pub fn type_name(dt: &DataType) -> String {
    match dt {
        DataType::Utf8 => "string".into(),
        DataType::Int32 => "int32".into(),
        DataType::Int64 => "int64".into(),
        DataType::Float64 => "double".into(),
        DataType::Boolean => "boolean".into(),
        DataType::Timestamp(TimeUnit::Microsecond, Some(tz)) => format!("timestamp[us, {tz}]"),
        DataType::Map(_, _) => "map<string,string>".into(),
        DataType::List(f) => format!("list<{}>", type_name(f.data_type())),
        other => format!("{other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_unsigned_or_nanosecond_columns() {
        for table in Table::ALL {
            for field in table.schema().fields() {
                let dt = field.data_type();
                assert!(!dt.is_unsigned_integer(), "{table}.{} is unsigned", field.name());
                if let DataType::Timestamp(unit, tz) = dt {
                    assert_eq!(*unit, TimeUnit::Microsecond, "{table}.{}", field.name());
                    assert_eq!(tz.as_deref(), Some("UTC"));
                }
                assert_ne!(field.name(), PARTITION_COLUMN, "date lives in the folder name");
            }
        }
    }

    #[test]
    fn files_from_before_an_added_column_stay_valid() {
        let without: Vec<_> =
            SAMPLES_SCHEMA.fields().iter().filter(|f| f.name() != col::IN_WINDOW).cloned().collect();
        assert_eq!(check_schema(Table::Samples, &Schema::new(without)), Ok(()));
        let without_value: Vec<_> =
            SAMPLES_SCHEMA.fields().iter().filter(|f| f.name() != col::VALUE).cloned().collect();
        assert_eq!(
            check_schema(Table::Samples, &Schema::new(without_value)),
            Err("missing column `value`".to_string())
        );
    }

    #[test]
    fn measurements_repeat_the_run_identity() {
        for name in [col::RUN_ID, col::HOST, col::ROLE, col::SUITE, col::STARTED_AT] {
            assert!(MEASUREMENTS_SCHEMA.field_with_name(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn the_analyst_readme_documents_every_column() {
        let readme = include_str!("../README.md");
        for table in Table::ALL {
            for field in table.schema().fields() {
                let row = format!("| `{}` | {} |", field.name(), type_name(field.data_type()));
                assert!(readme.contains(&row), "datasets/README.md lacks the row `{row}` for {table}");
            }
        }
    }

    #[test]
    fn describe_names_every_column() {
        let text = describe();
        for table in Table::ALL {
            for field in table.schema().fields() {
                assert!(text.contains(field.name().as_str()));
            }
        }
    }
}

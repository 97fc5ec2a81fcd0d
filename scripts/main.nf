#!/usr/bin/env nextflow
// Nextflow workflow: the same as scripts/Snakefile — sort each recording with Makefile.pipeline,
// then ks-match-sessions over each subject's sessions. Nextflow is not available on the machines
// ks-tools is developed on: this file is kept small and plain, and it is UNTESTED (README).
//
//   nextflow run scripts/main.nf --recordings recordings.csv --out sorted --ks_home /opt/ks-tools
//
// recordings.csv: a header line, then one line per recording, sessions of a subject in order:
//   name,subject,rec,probe,set
//   day1,mouse1,/data/day1.ap.bin,neuropixels1,n_chan_bin=385
//   day2,mouse1,/data/day2.ap.bin,neuropixels1,n_chan_bin=385
nextflow.enable.dsl = 2

params.recordings = 'recordings.csv'
params.out = 'sorted'
params.ks_home = "${projectDir}/.."
params.ks_bin = "${params.ks_home}/build/bin"
params.device = 'auto'
params.match_units = 'good'

process SORT {
    tag "${name}"
    cpus 4
    memory '16 GB'
    publishDir params.out, mode: 'symlink'   // the sortings stay in Nextflow's work folder (keep it; rerun with -resume)

    input:
    tuple val(name), val(subject), path(rec), val(probe), val(settings)

    output:
    tuple val(subject), val(name), path("${name}.ks")

    script:
    """
    OMP_NUM_THREADS=${task.cpus} make --no-print-directory -f ${params.ks_home}/Makefile.pipeline \\
        KS_BIN=${params.ks_bin} REC=${rec} PROBE=${probe} SET="${settings}" DEVICE=${params.device} OUT=${name}.ks
    """
}

process MATCH_SESSIONS {
    tag "${subject}"
    publishDir params.out, mode: 'copy'

    input:
    tuple val(subject), val(names), path(sortings)

    output:
    path "${subject}.match"

    script:
    """
    ${params.ks_bin}/ks-match-sessions --out ${subject}.match --units ${params.match_units} ${names.collect { it + '.ks' }.join(' ')}
    """
}

workflow {
    rows = Channel.fromPath(params.recordings)
        .splitCsv(header: true)
        .map { r -> tuple(r.name, r.subject, file(r.rec), r.probe, r.set ?: '') }
    sorted = SORT(rows)
    // Sessions in the order of the CSV (groupTuple keeps arrival order, so sort by name's row).
    order = Channel.fromPath(params.recordings).splitCsv(header: true).toList()
        .map { rs -> rs.collectEntries { r -> [(r.name): rs.indexOf(r)] } }
    grouped = sorted.groupTuple()
        .combine(order)
        .map { subject, names, dirs, idx ->
            def pairs = [names, dirs].transpose().sort { p -> idx[p[0]] }
            tuple(subject, pairs.collect { it[0] }, pairs.collect { it[1] })
        }
        .filter { it[1].size() >= 2 }
    MATCH_SESSIONS(grouped)
}

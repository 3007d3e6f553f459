"""Code systems and identifier systems of the Annuaire Santé (ANS nomenclatures, NOS).

The code values and labels are facts from the public NOS terminologies (TRE_G15, TRE_R38,
TRE_R02, TRE_R23, TRE_R09, TRE_R257, TRE_R256). URLs follow the ``https://mos.esante.gouv.fr/NOS/
<TRE>/FHIR/<TRE>`` pattern; identifier systems are those of the French FHIR directory IG.
"""

from __future__ import annotations

__all__ = [
    "CATEGORIES",
    "CIVILITES_EXERCICE",
    "MODES_EXERCICE",
    "PROFESSIONS",
    "SECTEURS",
    "SPECIALITES",
    "SYS_ADELI",
    "SYS_FINESS",
    "SYS_IDNPS",
    "SYS_IDNST",
    "SYS_ID_TYPE",
    "SYS_RPPS",
    "SYS_SIRENE",
    "TRE_G15",
    "TRE_R02",
    "TRE_R09",
    "TRE_R23",
    "TRE_R38",
    "TRE_R256",
    "TRE_R257",
    "URL_EMAIL_TYPE",
    "URL_MAILBOX_METADATA",
    "nos",
]


def nos(name: str) -> str:
    """The canonical FHIR URL of a NOS terminology, e.g. ``TRE_G15-ProfessionSante``."""
    return f"https://mos.esante.gouv.fr/NOS/{name}/FHIR/{name.replace('_', '-')}"


TRE_G15 = nos("TRE_G15-ProfessionSante")
TRE_R38 = nos("TRE_R38-SpecialiteOrdinale")
TRE_R02 = nos("TRE_R02-SecteurActivite")
TRE_R09 = nos("TRE_R09-CategorieProfessionnelle")
TRE_R23 = nos("TRE_R23-ModeExercice")
TRE_R256 = nos("TRE_R256-TypeMessagerie")
TRE_R257 = nos("TRE_R257-TypeBAL")

SYS_IDNPS = "urn:oid:1.2.250.1.71.4.2.1"
SYS_IDNST = "urn:oid:1.2.250.1.71.4.2.2"
SYS_RPPS = "https://rpps.esante.gouv.fr"
SYS_ADELI = "https://adeli.esante.gouv.fr"
SYS_FINESS = "https://finess.esante.gouv.fr"
SYS_SIRENE = "https://sirene.fr"
SYS_ID_TYPE = "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0203"

URL_MAILBOX_METADATA = "https://interop.esante.gouv.fr/ig/fhir/annuaire/StructureDefinition/as-ext-mailbox-mss-metadata"
URL_EMAIL_TYPE = "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-contact-point-email-type"

# TRE_G15-ProfessionSante (current codes).
PROFESSIONS: dict[str, str] = {
    "10": "Médecin",
    "21": "Pharmacien",
    "26": "Audioprothésiste",
    "28": "Opticien-Lunetier",
    "31": "Assistant dentaire",
    "32": "Physicien médical",
    "40": "Chirurgien-Dentiste",
    "50": "Sage-Femme",
    "60": "Infirmier",
    "69": "Infirmier psychiatrique",
    "70": "Masseur-Kinésithérapeute",
    "80": "Pédicure-Podologue",
    "81": "Orthoprothésiste",
    "82": "Podo-Orthésiste",
    "83": "Orthopédiste-Orthésiste",
    "84": "Oculariste",
    "85": "Epithésiste",
    "86": "Technicien de laboratoire médical",
    "91": "Orthophoniste",
    "92": "Orthoptiste",
    "94": "Ergothérapeute",
    "95": "Diététicien",
    "96": "Psychomotricien",
    "98": "Manipulateur ERM",
}

# TRE_R38-SpecialiteOrdinale (a working subset of the values in force).
SPECIALITES: dict[str, str] = {
    "SM01": "Anatomie et cytologie pathologiques",
    "SM02": "Anesthésie-réanimation",
    "SM03": "Biologie médicale",
    "SM04": "Cardiologie et maladies vasculaires",
    "SM05": "Chirurgie générale",
    "SM08": "Chirurgie orthopédique et traumatologie",
    "SM14": "Chirurgie viscérale et digestive",
    "SM15": "Dermatologie et vénéréologie",
    "SM16": "Endocrinologie et métabolisme",
    "SM18": "Gériatrie",
    "SM19": "Gynécologie médicale",
    "SM20": "Gynécologie-obstétrique",
    "SM24": "Gastro-entérologie et hépatologie",
    "SM25": "Médecine du travail",
    "SM26": "Qualifié en médecine générale",
    "SM27": "Médecine interne",
    "SM28": "Médecine nucléaire",
    "SM29": "Médecine physique et de réadaptation",
    "SM30": "Néphrologie",
    "SM32": "Neurologie",
    "SM38": "Ophtalmologie",
    "SM39": "Oto-rhino-laryngologie",
    "SM40": "Pédiatrie",
    "SM41": "Pneumologie",
    "SM42": "Psychiatrie",
    "SM43": "Psychiatrie de l'enfant et de l'adolescent",
    "SM44": "Radio-diagnostic",
    "SM45": "Radiothérapie",
    "SM48": "Rhumatologie",
    "SM49": "Santé publique et médecine sociale",
    "SM53": "Spécialiste en médecine générale",
    "SM54": "Médecine générale",
    "SM57": "Allergologie",
    "SM58": "Maladies infectieuses et tropicales",
    "SM59": "Médecine d'urgence",
    "SM61": "Médecine vasculaire",
    "SCD01": "Orthopédie dento-faciale",
    "SCD02": "Chirurgie orale",
    "SCD03": "Médecine bucco-dentaire",
}

# TRE_R02-SecteurActivite (the sectors the generator uses).
SECTEURS: dict[str, str] = {
    "SA01": "Etablissement public de santé",
    "SA02": "Hôpital militaire du Service de Santé des Armées",
    "SA03": "Etablissement privé PSPH",
    "SA04": "Etablissement privé non PSPH",
    "SA05": "Centre de santé",
    "SA07": "Cabinet individuel",
    "SA08": "Cabinet de groupe",
    "SA09": "Exercice en société",
    "SA17": "Etablissement d'hébergement pour personnes âgées",
    "SA18": "Etablissement pour handicapés",
    "SA25": "Laboratoire de biologie médicale",
    "SA33": "Pharmacie d'officine",
    "SA52": "Hospitalisation à domicile",
    "SA60": "Etablissement social",
}

# TRE_R23-ModeExercice.
MODES_EXERCICE: dict[str, str] = {"L": "Libéral", "S": "Salarié", "B": "Bénévole"}

# TRE_R09-CategorieProfessionnelle.
CATEGORIES: dict[str, str] = {"C": "Civil", "M": "Militaire", "E": "Etudiant", "F": "Fonctionnaire"}

# TRE_R11-CiviliteExercice.
CIVILITES_EXERCICE: dict[str, str] = {"DR": "Docteur", "PR": "Professeur", "MC": "Médecin en chef"}
